"""Schemathesis hooks for fuzzing the API (`SCHEMATHESIS_HOOKS=tests.schemathesis_hooks`).

One thing the OpenAPI document cannot say: POST /chat's rules across messages (the last
message is the question answered, so it is the user's and at most 2,000 characters;
20,000 characters in all). JSON Schema has no keyword for an array's last item or for a
sum over items, so a request the document calls valid can break them, and the server
rightly answers 422. Only that 422,
for a request that does break one of those rules, is not counted as a failure; every other
rule is in the document and checked as it stands.
"""

from __future__ import annotations

import schemathesis

# service.chat.MAX_CHARS and service.qa.MAX_QUESTION_CHARS, written out so that `st` need
# not import the service (and its models) to load these hooks; tests/test_fuzz.py checks
# that they agree.
MAX_CHAT_CHARS = 20_000
MAX_QUESTION_CHARS = 2_000


def breaks_chat_rule(body: object) -> bool:
    """Whether a POST /chat body breaks a rule across its messages that JSON Schema cannot
    state (and that service.chat.check_messages enforces with a 422)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return False
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    if not messages:
        return False
    contents = [m["content"] if isinstance(m.get("content"), str) else "" for m in messages]
    return (messages[-1].get("role") != "user" or len(contents[-1]) > MAX_QUESTION_CHARS
            or sum(map(len, contents)) > MAX_CHAT_CHARS)


def is_unwritable_chat_rule(case, status_code: int) -> bool:
    """A 422 from POST /chat for a request that breaks one of those rules."""
    return (case.operation.method.upper() == "POST" and case.operation.path == "/chat"
            and status_code == 422 and breaks_chat_rule(case.body))


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure except a schema-valid request's 422 for an unwritable chat rule."""
    return not (failure.code == "ST202" and is_unwritable_chat_rule(case, response.status_code))
