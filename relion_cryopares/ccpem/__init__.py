"""CCP-EM pipeliner (Doppio) plugins for our four jobs.

``ccpem-pipeliner`` finds them through the ``ccpem_pipeliner.jobs`` entry points of this package
(``cryopares.train``, ``cryopares.infer``, ``cryopares.localrefine``, ``cryopares.reconstruct``);
the classes live in :mod:`relion_cryopares.ccpem.jobs`, which imports the pipeliner. This package
itself imports nothing from it, so ``relion_cryopares`` works without the optional extra
(``pip install relion-cryopares[ccpem]``).
"""

#: Entry-point name (the pipeliner's process name) -> (class name, our command).
PLUGINS = {
    "cryopares.train": ("CryoparesTrain", "cryopares_train"),
    "cryopares.infer": ("CryoparesInfer", "cryopares_infer"),
    "cryopares.localrefine": ("CryoparesLocalRefine", "cryopares_localrefine"),
    "cryopares.reconstruct": ("CryoparesReconstruct", "cryopares_reconstruct"),
}
