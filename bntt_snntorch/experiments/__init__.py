"""The experiments tier: what the commands run, as Python functions with a small options object.

``analyze_run``, ``convert_run``, ``export_run`` and the studies (``compare_coding``,
``compare_conversion``, ``compare_norms``, ``compare_training``, ``compare_nir``) read and train runs
through :mod:`bntt_snntorch.training`; the commands (:mod:`bntt_snntorch.commands`) are argparse plus
one call of these.
"""

from .analyze import AnalysisOptions, analyze_run
from .coding_study import CodingStudyOptions, compare_coding
from .conversion_study import ConversionStudyOptions, compare_conversion
from .convert import ConversionOptions, convert_run
from .export import ExportOptions, export_run
from .nir_study import NIRStudyOptions, compare_nir
from .norm_study import NormStudyOptions, compare_norms
from .training_study import TrainingStudyOptions, compare_training

__all__ = [
    "AnalysisOptions",
    "CodingStudyOptions",
    "ConversionOptions",
    "ConversionStudyOptions",
    "ExportOptions",
    "NIRStudyOptions",
    "NormStudyOptions",
    "TrainingStudyOptions",
    "analyze_run",
    "compare_coding",
    "compare_nir",
    "compare_conversion",
    "compare_norms",
    "compare_training",
    "convert_run",
    "export_run",
]
