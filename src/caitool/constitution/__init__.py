"""Constitutions: principles for critique/revision and comparison, and few-shot examples.

``model`` holds what a constitution is, ``load`` finds one by name or path and recognises its
format, and ``formats`` has one reader per format.
"""

from caitool.constitution.load import builtin_names, from_data, load, resolve, search_path
from caitool.constitution.model import (
    ComparisonExample,
    ComparisonPrinciple,
    Constitution,
    ConstitutionError,
    CritiqueExample,
    Principle,
    WorkedComparison,
)

__all__ = ["ComparisonExample", "ComparisonPrinciple", "Constitution", "ConstitutionError",
           "CritiqueExample", "Principle", "WorkedComparison", "builtin_names", "from_data", "load", "resolve",
           "search_path"]
