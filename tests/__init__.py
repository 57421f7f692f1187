"""Test suite of relion-cryopares (a package so helpers import as ``tests.relion_project``)."""
