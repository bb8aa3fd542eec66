"""`evaluate` metric modules, loaded by path (`evaluate.load(".../modules/f1.py")`), so nothing is fetched.

Each file is a self-contained `evaluate` module script: `evaluate.load` copies it, with the
`common.py` it imports, into its own cache and imports it from there, so the scripts import
`common` relatively and nothing else from hf_resnet.
"""
