"""Importers: other projects' checkpoints, turned into models of the catalog.

``formats.FORMATS`` is the registry: each format names its command-line options (kept as its source project
spells them) and the converter that reads its files. A converter returns a ``entry.Converted``: the net with
its weights, the factory that rebuilds it, its hyper-parameters and kind. ``entry.import_model`` then checks
it through the serving wrapper and writes the entry into the models folder (ganexport.models_folder), whose
record the catalog reads as a ModelSpec: build, parity, publishing and serving then treat it as their own.
"""
