"""moto still needs the fixes of ``adapters/localcloud/moto_fixes.py`` that can be seen
without running an execution (the others are exercised by every moto test in tests/aws);
a moto that fixes one turns its test red, and the fix can go."""

from __future__ import annotations

from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

from rustyflower.adapters.localcloud.moto_fixes import step_functions_fixes


def _nothing(parameters: dict, region: str, credentials: object) -> None:
    raise AssertionError("no Lambda is invoked here")


def test_each_parse_keeps_its_own_query_language_scopes() -> None:
    one, other = Preprocessor(), Preprocessor()
    # moto's bug: every parse shares one list, so parses side by side corrupt it
    assert one._query_language_per_scope is other._query_language_per_scope
    with step_functions_fixes(_nothing):
        one, other = Preprocessor(), Preprocessor()
        assert one._query_language_per_scope is not other._query_language_per_scope
        assert one._query_language_per_scope == []
    assert Preprocessor()._query_language_per_scope is Preprocessor._query_language_per_scope
