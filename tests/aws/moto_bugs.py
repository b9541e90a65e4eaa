"""moto 5.2's Step Functions bugs the corpus meets (not Step Functions behaviour).

Each is a strict ``xfail`` where it is met, so a moto that fixes it turns the test red
and the entry gets removed. docs/aws.md, "Testing on moto", lists them for readers.
"""

from __future__ import annotations

MOTO_BUGS: dict[str, str] = {
    # case id (uninterrupted) or "case@k" (cut after transition k): moto 5.2, not Step
    # Functions (docs/aws.md, "Testing on moto")
    "choice_comparisons::timestamp_compared_as_instants": (
        "moto compares TimestampLessThan/... as text, not as instants"
    ),
    "choice_comparisons::missing_variable_is_runtime_error": (
        "moto reads a Choice Variable that selects nothing as false instead of raising "
        "States.Runtime"
    ),
    "runtime_errors::missing_choice_variable": (
        "moto reads a Choice Variable that selects nothing as false instead of raising "
        "States.Runtime"
    ),
    "choice_type_tests::null": 'moto reads the Pass Result "null" (a string) as null',
    "choice_type_tests::escaped_star": "moto's StringMatches ignores the \\* escape",
    "map_scalars::items_path_not_an_array": (
        "moto raises States.QueryEvaluationError for a Map over a non-array (Step "
        "Functions: States.Runtime)"
    ),
    "runtime_errors::missing_items_path": (
        "moto's States.ALL catches States.Runtime (here an ItemsPath that selects "
        "nothing); in Step Functions States.ALL does not match States.Runtime"
    ),
    "runtime_errors::result_path_into_a_number": (
        "moto raises States.Runtime (not States.ResultPathMatchFailure) for a ResultPath "
        "into a number, and its States.ALL on_error handler catches States.Runtime"
    ),
    "runtime_errors::result_path_into_a_number@1": (
        "moto raises States.Runtime (not States.ResultPathMatchFailure) for a ResultPath "
        "into a number, and its States.ALL on_error handler catches States.Runtime"
    ),
}


MOTO_ERROR_NAMES: dict[str, str] = {
    # the error Step Functions raises -> the one moto 5.2 raises in its place (not Step
    # Functions behaviour; docs/aws.md, "Testing on moto")
    "States.ParameterPathFailure": "States.Runtime",
    # moto never raises States.ParameterPathFailure: a Parameters or ResultSelector path
    # that selects nothing raises States.Runtime there
}
