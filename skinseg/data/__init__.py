"""Data: ISIC readers, a generic images/ + masks/ reader, the in-memory arrays, augmentation
and the downloader (the article's replica protocol: :mod:`skinseg.lab.protocols`; synthetic
test data: :mod:`skinseg.lab.synthetic`)."""
from .arrays import SegmentationData
from .folders import detect_layout, find_folder_pairs
from .isic import LAYOUTS, detect_year, find_pairs, read_pair
from .loading import load_dataset, load_split

__all__ = ["LAYOUTS", "SegmentationData", "detect_layout", "detect_year", "find_folder_pairs", "find_pairs",
           "load_dataset", "load_split", "read_pair"]
