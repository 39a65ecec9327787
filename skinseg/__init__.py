"""skinseg: U-Net and Attention U-Net for skin-lesion segmentation, and the library behind the book.

Modules, one job each: :mod:`~skinseg.models`, :mod:`~skinseg.losses`, :mod:`~skinseg.metrics`,
:mod:`~skinseg.data`, :mod:`~skinseg.train`, :mod:`~skinseg.evaluate`, :mod:`~skinseg.config`.
"""
__version__ = "0.1.0"
