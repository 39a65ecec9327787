"""Data: ISIC readers, the in-memory arrays, augmentation, synthetic data and the downloader."""
from .arrays import SegmentationData
from .isic import LAYOUTS, detect_year, find_pairs, read_pair
from .loading import load_dataset, load_split

__all__ = ["LAYOUTS", "SegmentationData", "detect_year", "find_pairs", "load_dataset", "load_split", "read_pair"]
