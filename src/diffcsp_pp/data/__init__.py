"""Datasets: reading CSV/CIF inputs, the benchmark registry, preprocessing and its cache."""

from .preprocess import PreprocessConfig, PreprocessResult, cache_key, preprocess
from .registry import DATASETS, DatasetFile, find_by_checksum, get_file, verify_file
from .sources import RawCrystal, parse_cif, read_crystals
from .store import load_records, save_records

__all__ = [
    "DATASETS",
    "DatasetFile",
    "PreprocessConfig",
    "PreprocessResult",
    "RawCrystal",
    "cache_key",
    "find_by_checksum",
    "get_file",
    "load_records",
    "parse_cif",
    "preprocess",
    "read_crystals",
    "save_records",
    "verify_file",
]
