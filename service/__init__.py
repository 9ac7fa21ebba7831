"""Online path: question -> cited answer (QA pipeline, Litestar app, CLI)."""

import indexing  # noqa: F401  (first: spaCy's thinc must not pull torch in; see indexing/__init__)
