"""Article parsing: corpus files (.txt shapes and .jsonl) -> `Article` records.

The `text` of an article is its cleaned body; every offset anywhere in the system
refers to it. Headline, summary, source outlet and ids become metadata, and site
boilerplate never reaches `text`. Characters are kept exactly as written.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from indexing.errors import CorpusError, InvalidDocIdError

DOC_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SOURCE_RE = re.compile(r"Original Source:\s*(?P<source>\S.*?)\s*")
# Lines that news sites append or interleave and that carry no article content.
_BOILERPLATE_RES = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"leave a reply",
        r"leave a comment",
        r"your email address will not be published\..*",
        r"required fields are marked \*",
        r"news hub",
        r"share this( article)?:?",
        r"advertisement",
        r"related( articles| posts| stories)?:?",
        r"click here to .*",
        r"subscribe( to our newsletter)?\.?",
        r"[\s|\u00a0\u2022·•\-–—_*]*",  # separators such as "\u00a0|\u00a0"
    )
]
# Characters str.strip() would remove but that are content when inside a line;
# paragraph edges are trimmed of these only.
_EDGE_WS = " \t\r\n\f\v\u00a0\u2009\u200b\ufeff"
SUPPORTED_SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True, slots=True)
class Article:
    """One parsed article; `text` is the canonical body all offsets refer to."""

    doc_id: str
    text: str
    title: str | None = None
    summary: str | None = None
    source: str | None = None
    url: str | None = None
    published: str | None = None
    uuid: str | None = None
    path: str | None = field(default=None, compare=False)

    @property
    def content_hash(self) -> str:
        """A hash of everything indexed about the article (not its path)."""
        payload = json.dumps(
            [self.doc_id, self.title, self.summary, self.source, self.url, self.published,
             self.uuid, self.text],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A corpus file (or JSONL line) that could not be parsed, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.path}: {self.reason}"


def validate_doc_id(doc_id: object, where: str) -> str:
    """Return `doc_id` if it matches [A-Za-z0-9._:-]{1,128}; raise CorpusError naming `where`."""
    if not isinstance(doc_id, str) or not DOC_ID_RE.fullmatch(doc_id):
        raise InvalidDocIdError(
            f"{where}: invalid doc_id {doc_id!r}; a doc_id is 1-128 characters of "
            "letters, digits and . _ : - (rename the file or fix the field)"
        )
    return doc_id


def _is_boilerplate(line: str) -> bool:
    stripped = line.strip(_EDGE_WS)
    return any(p.fullmatch(stripped) for p in _BOILERPLATE_RES)


def _looks_like_headline(line: str, blank_after: bool) -> bool:
    # A headline is one short line; a summary paragraph has several sentences. A final
    # period is allowed only when a blank line sets the line apart.
    stripped = line.strip(_EDGE_WS)
    sentence_breaks = len(re.findall(r"[.!?][\"'’”]?\s+[A-Z]", stripped))
    return (
        0 < len(stripped) <= 200
        and sentence_breaks == 0
        and (blank_after or not stripped.endswith("."))
    )


def parse_txt(raw: str, doc_id: str, path: str | None = None) -> Article:
    """Parse one `.txt` article (the shapes in data/articles and BBC's headline-blank-body)."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # Each non-empty line is a paragraph; remember whether a blank line follows it.
    paras: list[tuple[str, bool]] = []
    for i, line in enumerate(lines):
        trimmed = line.strip(_EDGE_WS) if line.strip(_EDGE_WS) == "" else line.strip(" \t\f\v")
        if trimmed == "":
            continue
        blank_after = i + 1 < len(lines) and lines[i + 1].strip(_EDGE_WS) == ""
        paras.append((trimmed, blank_after))
    if not paras:
        raise CorpusError(f"{path or doc_id}: the file holds no text")

    title: str | None = None
    summary: str | None = None
    uuid: str | None = None
    source: str | None = None

    first, blank_after_first = paras[0]
    if len(paras) > 1 and (blank_after_first or len(first) <= 120) and _looks_like_headline(first, blank_after_first):
        title = first
        paras = paras[1:]

    # Preamble markers: a lone "0" and a UUID line precede the summary.
    has_marker = False
    while paras and (paras[0][0] == "0" or _UUID_RE.fullmatch(paras[0][0])):
        if _UUID_RE.fullmatch(paras[0][0]):
            uuid = paras[0][0]
        has_marker = True
        paras = paras[1:]

    body: list[str] = []
    separator_at = next(
        (i for i, (p, _) in enumerate(paras[:4]) if re.fullmatch(r"[\s|\u00a0]*\|[\s|\u00a0]*", p)),
        None,
    )
    if separator_at is not None:
        # "summary | headline-again" layout.
        summary = "\n\n".join(p for p, _ in paras[:separator_at]) or None
        paras = paras[separator_at + 1:]
        if title and paras and paras[0][0] == title:
            paras = paras[1:]
    elif has_marker or title is None:
        if len(paras) > 1:
            summary = paras[0][0]
            paras = paras[1:]

    for text, _ in paras:
        match = _SOURCE_RE.fullmatch(text)
        if match:
            source = match.group("source")
            continue
        if _is_boilerplate(text):
            continue
        body.append(text)
    if not body:
        raise CorpusError(f"{path or doc_id}: no article body found after removing boilerplate")
    return Article(
        doc_id=doc_id, text="\n\n".join(body), title=title, summary=summary, source=source,
        uuid=uuid, path=path,
    )


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise CorpusError(f"{where}: field {key!r} must be a string or null")
    return value


def parse_jsonl_line(line: str, where: str, path: str | None = None) -> Article:
    """Parse one JSONL article object; raise CorpusError naming `where` when malformed."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise CorpusError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise CorpusError(f"{where}: JSON that cannot be read ({exc})") from None
    return article_from_mapping(obj, where, path)


def article_from_mapping(obj: object, where: str, path: str | None = None) -> Article:
    """Build an Article from a JSONL-format mapping (also the POST /documents body)."""
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    doc_id = validate_doc_id(obj.get("doc_id"), where)
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CorpusError(f"{where}: field 'text' is required and must be a non-empty string")
    if "\x00" in text:
        raise CorpusError(f"{where}: field 'text' contains NUL characters")
    return Article(
        doc_id=doc_id,
        text=text,
        title=_optional_str(obj, "title", where),
        summary=_optional_str(obj, "summary", where),
        source=_optional_str(obj, "source", where),
        url=_optional_str(obj, "url", where),
        published=_optional_str(obj, "published", where),
        path=path,
    )


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"{path}: the file is empty")
    if b"\x00" in data:
        raise CorpusError(f"{path}: binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def txt_doc_id(path: Path, root: Path) -> str:
    """The doc_id of a .txt file: its name without extension, prefixed by its folders.

    A file directly in the corpus root is `NAME`; one in `business/` is `business:NAME`, so
    corpora that repeat file names across folders (BBC News) keep distinct ids.
    """
    if root.is_file():
        return path.stem
    return ":".join([*path.relative_to(root).parent.parts, path.stem])


def iter_corpus(root: Path) -> Iterator[Article | SkippedFile]:
    """Yield every article under `root` (a file or a directory read recursively).

    Unreadable files and malformed JSONL lines are yielded as SkippedFile; an invalid
    or duplicated doc_id raises CorpusError naming the files involved.
    """
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"corpus path {root} does not exist")
    if root.is_file():
        files = [root]
    else:
        files = sorted(
            p for p in root.rglob("*")
            if p.is_file() and p.suffix in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    seen: dict[str, str] = {}

    def claim(article: Article, where: str) -> Article:
        if article.doc_id in seen:
            raise InvalidDocIdError(
                f"duplicate doc_id {article.doc_id!r} in {seen[article.doc_id]} and {where}; "
                "doc_ids must be unique within a corpus"
            )
        seen[article.doc_id] = where
        return article

    for path in files:
        suffix = path.suffix
        if suffix not in SUPPORTED_SUFFIXES:
            yield SkippedFile(str(path), f"unsupported file type {suffix!r} (use .txt or .jsonl)")
            continue
        try:
            raw = _read_text(path)
        except (CorpusError, OSError) as exc:
            yield SkippedFile(str(path), str(exc).removeprefix(f"{path}: "))
            continue
        if suffix == ".txt":
            doc_id = validate_doc_id(txt_doc_id(path, root), str(path))
            try:
                article = parse_txt(raw, doc_id, str(path))
            except CorpusError as exc:
                yield SkippedFile(str(path), str(exc).removeprefix(f"{path}: "))
                continue
            yield claim(article, str(path))
            continue
        for lineno, line in enumerate(raw.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                article = parse_jsonl_line(line, where, str(path))
            except InvalidDocIdError:
                raise
            except CorpusError as exc:
                yield SkippedFile(where, str(exc).removeprefix(f"{where}: "))
                continue
            yield claim(article, where)
