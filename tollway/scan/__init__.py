"""``tollway scan``: provider API keys hard-coded in a source tree, found and masked.

Modules: ``detectors`` (the key shapes, as data), ``matcher`` (shapes in one text),
``files`` (which files to read), ``notebooks`` (.ipynb cells and outputs), ``scanner``
(a whole scan), ``findings`` and ``masking`` (what is reported and how it is shown),
``report`` (table and JSON), ``importer`` and ``migration`` (``--import``), ``cli``.
"""

from tollway.scan.cli import scan_app

__all__ = ["scan_app"]
