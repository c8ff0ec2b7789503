"""Template retrieval (CSPML-style, METHOD §7.2) for prediction from the formula alone.

Pipeline used by ``DiffCSPPP.predict(formula)`` without a space group:

1. :mod:`.index`: the model folder's ``template_index.npz`` (every training crystal's symmetry data,
   count key and standardised Magpie composition fingerprint), built by
   ``scripts/build_template_index.py``;
2. :meth:`.index.TemplateIndex.candidates`: training crystals with the query's sorted per-element
   counts (or a formula-unit multiple);
3. :mod:`.scorer`: ranking (the CSPML pair MLP, with or without "identical compositions first",
   or the Euclidean baseline: whichever ranked best on validation; ``template_scorer.json``);
4. :mod:`.substitution`: element substitution (Hungarian assignment within each count class);
5. :mod:`diffcsp_pp.sample.refine`: partial-noise refinement from t₀ = 100;
6. :mod:`.fallback`: enumerated templates when no training crystal fits.
"""

from .fallback import EnumeratedTemplate, enumerated_templates
from .index import INDEX_FILE, TemplateIndex, build_template_index, count_key, index_from_infos
from .retrieve import Candidate, retrieve, substituted_info
from .scorer import PairMLP, Scorer
from .substitution import SUBSTITUTION_PROPERTIES, substitution_map

__all__ = [
    "Candidate", "EnumeratedTemplate", "INDEX_FILE", "PairMLP", "Scorer", "SUBSTITUTION_PROPERTIES", "TemplateIndex",
    "build_template_index", "count_key", "enumerated_templates", "index_from_infos", "retrieve", "substituted_info",
    "substitution_map",
]
