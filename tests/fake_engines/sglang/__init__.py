"""A stand-in for SGLang, importable as ``sglang`` when ``tests/fake_engines`` is first on
PYTHONPATH, so that ``--serve sglang`` runs the real preset command (``python -m
sglang.launch_server ...``) against it. See :mod:`sglang.launch_server`."""
