"""cryopares_install_scheme: install into a project with the user's values, list, refuse, check."""

from __future__ import annotations

import subprocess
import sys

from relion_cryopares.schemes._install import main
from relion_cryopares.schemes._star import read_star


def _strings(path):
    stem = "scheme" if path.parent.name == "Schemes" else "schedule"
    label = "Scheme" if stem == "scheme" else "Schedule"
    rows = read_star(path / f"{stem}.star")[f"{stem}_strings"].rows
    return {r[f"_rln{label}StringVariableName"]: r[f"_rln{label}StringVariableValue"] for r in rows}


def test_install_with_values_for_relion4_and_31(tmp_path, capsys):
    (tmp_path / "MaskCreate/job012").mkdir(parents=True)
    (tmp_path / "MaskCreate/job012/mask.mrc").write_text("")
    args = ["cryopares_screen", "--project", str(tmp_path), "--set", "sym=D2", "--set", "model=External/job020/",
            "--set", "particles=Extract/job007/particles.star", "--exe-dir", "/opt/cryopares/bin"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "relion_schemer --scheme cryopares_screen --run" in out
    assert "WARNING: model=External/job020/ does not exist" in out and "mask=" not in out
    scheme = tmp_path / "Schemes/cryopares_screen"
    assert _strings(scheme)["sym"] == "D2"
    assert "fn_exe /opt/cryopares/bin/cryopares_infer" in (scheme / "infer/job.star").read_text()
    assert main(args + ["--relion31", "--as", "screen_lig2"]) == 0
    assert "relion_scheduler --schedule screen_lig2 --run" in capsys.readouterr().out
    schedule = tmp_path / "Schedules/screen_lig2"
    assert _strings(schedule)["stop_file"] == "STOP_screen_lig2"
    assert "Schedules/screen_lig2/infer/particles.star" in (schedule / "localrefine/job.star").read_text()
    # installed twice: refused unless --force
    assert main(args) == 1 and "exists" in capsys.readouterr().err
    assert main(args + ["--force", "--set", "wait_s=15"]) == 0


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    assert main(["cryopares_screen", "--project", str(tmp_path), "--set", "wait_s=soon"]) == 1
    assert capsys.readouterr().err.strip() == "ERROR: wait_s is a float variable: 'soon' is not a number"
    assert main(["cryopares_train", "--project", str(tmp_path), "--set", "zscore_thr=2"]) == 1
    assert "has no variable zscore_thr; its settings: particles" in capsys.readouterr().err
    assert main(["cryopares_nope", "--project", str(tmp_path)]) == 1
    assert "unknown scheme 'cryopares_nope'" in capsys.readouterr().err
    assert main(["cryopares_train", "--project", str(tmp_path / "missing")]) == 1


def test_console_script_lists_settings():
    out = subprocess.run([sys.executable, "-m", "relion_cryopares.schemes._install", "--list", "cryopares_train"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "train_args (string, default ''): more cryopares_train options" in out.stdout
