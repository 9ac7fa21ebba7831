"""Domain errors of the indexing side; the CLI and the HTTP layer map them to messages."""


class ArticleQAError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class CorpusError(ArticleQAError):
    """A corpus file or article record cannot be indexed."""


class InvalidDocIdError(CorpusError):
    """A doc_id outside [A-Za-z0-9._:-]{1,128}, or one used twice in a corpus."""


class IndexError_(ArticleQAError):
    """An index directory is missing, corrupt, or incompatible with this build."""


class IndexNotFoundError(IndexError_):
    """The index directory holds no index yet."""


class IncompatibleIndexError(IndexError_):
    """The index was built by another format version, model or chunking; rebuild it."""


class CorruptIndexError(IndexError_):
    """The index files cannot be read."""


class DocumentNotFoundError(ArticleQAError):
    """A doc_id that is not in the index."""


class DuplicateDocumentError(ArticleQAError):
    """Adding a doc_id that the index already holds, without replace."""
