"""One question from one parsed sentence: the answer is replaced by a wh-phrase and moved.

`answer_candidates` lists the spans of a sentence worth asking about (entities, numbers
and ranges, dates, noun phrases, reported clauses, reasons) with the kind of answer each
is; `make_question` turns a sentence and one of its spans into a question by
wh-movement over the dependency parse:

* the wh-phrase comes from the answer's kind ("who", "when", "how many" + the counted
  noun, "which" + the common noun heading the answer);
* a subject is asked about in place ("Who visited Pyongyang?"); anything else is fronted
  with subject-auxiliary inversion or do-support ("How many troops did North Korea
  send?"); a place or time phrase goes with its preposition ("where", "when"), an amount
  takes "by"/"to"/"from" along ("By how much did profits rise?"), and other prepositions
  are stranded ("Who did he give it to?");
* the question keeps only the answer's own clause: other clauses, parentheses and
  reported-speech frames are dropped, and adverbials that opened the sentence move to
  the end.

It returns None where the parse does not allow a grammatical question; the caller then
tries another span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The kind of answer a span is, from its entity label.
ENTITY_KINDS = {
    "PERSON": "person", "ORG": "organisation", "GPE": "place", "LOC": "place", "FAC": "place",
    "NORP": "group", "DATE": "date", "TIME": "time", "MONEY": "money", "PERCENT": "percent",
    "QUANTITY": "quantity", "CARDINAL": "count", "EVENT": "thing", "WORK_OF_ART": "thing",
    "PRODUCT": "thing", "LAW": "thing", "LANGUAGE": "thing",
}
NUMERIC_KINDS = frozenset({"money", "percent", "quantity", "count"})
# Prepositions after which a place or a time is asked with "where" / "when" alone.
_LOCATIVE = frozenset("in at inside near across throughout within into to outside".split())
_TEMPORAL = frozenset("in on at during".split())
_SINCE = frozenset("by since until".split())  # asked as "by when", "since when"
# Prepositions carried to the front with an amount ("By how much did profits rise?").
_PIED = frozenset("by to from".split())
# Children whose subtrees leave the question with them: other clauses, sentence adverbials.
_DROPPED = frozenset("advcl conj cc preconj parataxis intj discourse mark meta dep appos".split())
_EDGE_PUNCT = frozenset(', ; : — – " “ ” ‘ ’ ( ) [ ] . ! ?'.split()) | {"'", "...", "--"}
_SUBJECTS = frozenset({"nsubj", "nsubjpass", "csubj", "csubjpass"})
_AUX = frozenset({"aux", "auxpass"})
_DO = {"VBD": "did", "VBZ": "does", "VBP": "do"}
_CONTRACTED = {"'s": "is", "’s": "is", "'re": "are", "’re": "are", "'ve": "have", "’ve": "have",
               "'ll": "will", "’ll": "will", "'d": "would", "’d": "would", "'m": "am",
               "’m": "am", "ca": "can", "wo": "will"}
_RELATIVE = frozenset({"WDT", "WP", "WP$", "WRB"})
_OPENERS = frozenset('( [ " “ ‘ \' $ £ €'.split())
_PERSONAL = frozenset("i you he she it we they me him her us them".split())
_QUOTES = str.maketrans("", "", "\"“”‘’")
MAX_ANSWER_TOKENS = 12
MAX_QUESTION_WORDS = 28


@dataclass(frozen=True, slots=True)
class Span:
    """Tokens [first, last) of a sentence, and the kind of answer they are."""

    first: int
    last: int
    kind: str


def answer_candidates(doc) -> list[Span]:
    """The spans of a parsed sentence that a question could ask for, without duplicates."""
    spans: dict[tuple[int, int], Span] = {}

    def add(first: int, last: int, kind: str) -> None:
        # Articles are not part of an answer ("the Bank of England" -> "Bank of England").
        while first < last and (doc[first].lower_ in ("the", "a", "an") or doc[first].is_punct):
            first += 1
        while last > first and doc[last - 1].is_punct and doc[last - 1].text != "%":
            last -= 1
        # Boundaries fall on spaces or punctuation, never inside a word ("e-mails").
        glued = (first > 0 and not doc[first - 1].whitespace_
                 and doc[first - 1].text not in _OPENERS) or (
            last < len(doc) and not doc[last - 1].whitespace_ and doc[last].is_alpha)
        # An answer starts and ends with a word, a number or a currency sign.
        edges = last > first and (doc[first].text[0].isalnum() or doc[first].pos_ == "SYM") \
            and doc[last - 1].text[-1].isalnum() or (last > first and doc[last - 1].text == "%")
        if 0 < last - first <= MAX_ANSWER_TOKENS and edges and not glued \
                and (first, last) not in spans:
            spans[(first, last)] = Span(first, last, kind)

    for tok in doc:
        # A reason: what follows "because" / "because of" (before noun phrases, which
        # would claim "the strike" of "because of the strike" as a thing).
        if tok.lower_ == "because":
            sub = [t for t in (tok.head.subtree if tok.dep_ == "mark" else tok.subtree)
                   if t.i > tok.i and not (t.i == tok.i + 1 and t.lower_ == "of")]
            while sub and sub[-1].is_punct:
                sub.pop()
            if sub:
                add(sub[0].i, sub[-1].i + 1, "reason")
    for ent in doc.ents:
        kind = ENTITY_KINDS.get(ent.label_)
        if kind is None:
            continue
        first, last = ent.start, ent.end
        if kind in ("money", "quantity"):
            # "$" and "£" sit outside spaCy's entity, "m"/"bn" sometimes too.
            while first > 0 and doc[first - 1].pos_ == "SYM":
                first -= 1
            while last < len(doc) and not doc[last - 1].whitespace_ \
                    and doc[last].like_num is False and doc[last].is_alpha:
                last += 1
        add(first, last, kind)
    for chunk in doc.noun_chunks:
        root = chunk.root
        if root.pos_ == "PRON" or root.ent_type_ or root.dep_ not in (
                "nsubj", "nsubjpass", "dobj", "pobj", "attr", "appos"):
            continue
        add(chunk.start, chunk.end, "thing")
        # The noun phrase with its modifiers ("the capital of France").
        subtree = [t for t in root.subtree if t.i >= chunk.start]
        while subtree and subtree[-1].is_punct:
            subtree.pop()
        last = subtree[-1].i + 1 if subtree else chunk.end
        if last > chunk.end and not any(t.dep_ in ("relcl", "acl", "cc") or t.text in ",;()"
                                        for t in subtree):
            add(chunk.start, last, "thing")
    for tok in doc:
        # A reported clause ("said that ..."), or an intended one ("promised to cut taxes").
        if tok.head.pos_ == "VERB" and tok.head.i < tok.i and (
                tok.dep_ == "ccomp" or (tok.dep_ == "xcomp" and tok.head.lemma_ != "go"
                                        and not any(c.dep_ == "auxpass"
                                                    for c in tok.head.children))):
            sub = list(tok.subtree)
            while sub and sub[-1].is_punct:
                sub.pop()
            if not sub:
                continue
            first = sub[0].i + (1 if sub[0].dep_ == "mark" and sub[0].lower_ == "that" else 0)
            add(first, sub[-1].i + 1, "clause")
    return sorted(spans.values(), key=lambda s: (s.first, s.last))


def make_question(doc, span: Span, rng) -> str | None:
    """A question whose answer is `span` of the parsed sentence `doc`, or None."""
    answer = doc[span.first:span.last]
    root = answer.root
    if span.kind == "reason":
        because = next((t for t in doc[max(0, span.first - 3):span.first]
                        if t.lower_ == "because"), None)
        if because is None:
            return None
        pred = _predicate(because) if because.dep_ == "prep" else _predicate(because.head)
        cause = set(range(because.i, span.last))
        if because.dep_ == "mark":
            cause |= set(range(*_subtree_span(because.head)))
        return _front(doc, pred, "why", cause)
    if root.dep_ == "appos":
        return _identity_question(doc, span, root)
    if span.kind == "person" and root.dep_ in _SUBJECTS and rng.random() < 0.5:
        appos = next((c for c in root.children if c.dep_ == "appos"), None)
        if appos is not None:
            first, last = _subtree_span(appos)
            words = _render([t for t in doc[first:last] if t.text not in _EDGE_PUNCT])
            return _finish(f"who is {words}") if words else None
    if sum(not span.first <= t.head.i < span.last or t.head.i == t.i for t in answer) != 1:
        return None  # not one phrase of the parse
    phrase = _wh_phrase(doc, span, rng)
    if phrase is None:
        return None
    wh, (u_first, u_last) = phrase
    unit = doc[u_first:u_last].root
    counted = unit.i not in range(span.first, span.last)  # "how many" + the counted noun
    if not counted and not _whole_phrase(unit, u_last, span.last):
        return None
    # The wh-phrase replaces the answer's whole phrase: its articles and modifiers
    # ("Tory leader Michael Howard"), and any clause or apposition hanging off it.
    moved = {t.i for t in unit.subtree} | set(range(u_first, u_last))
    pred = _predicate(unit)
    # The phrase asked about is an argument or adjunct of its clause's verb, directly or
    # through a preposition; deeper inside a noun phrase ("the capital of which country",
    # "whose owner Menatep Group") there is no natural question.
    if pred is None or not (unit.head.i == pred.i or (unit.dep_ == "pobj" and unit.head.head.i == pred.i)):
        return None
    if span.kind in ("date", "time") and unit.dep_ not in ("pobj", "npadvmod", "tmod"):
        return None
    if unit.dep_ == "pobj":
        prep = unit.head
        lower = prep.lower_
        if span.kind == "place" and lower in _LOCATIVE:
            wh, moved = "where", moved | {prep.i}
        elif span.kind in ("date", "time"):
            if lower not in _TEMPORAL | _SINCE:
                return None  # "for the three months", "before 2001": not a "when"
            wh = "when" if lower in _TEMPORAL else f"{lower} when"
            moved = moved | {prep.i}
        elif span.kind in NUMERIC_KINDS and lower in _PIED:
            wh, moved = f"{lower} {wh}", moved | {prep.i}
    elif span.kind in ("date", "time") and unit.dep_ in ("npadvmod", "tmod"):
        wh = "when"
    if unit.dep_ in _SUBJECTS and unit.head.i == pred.i:
        body = [t for t in _clause(pred, moved) if t.i not in moved]
        if any(t.tag_ in _RELATIVE for t in body):
            return None
        words = _render(body)
        return _finish(f"{wh} {words}") if words else None
    if unit.dep_ == "pobj" and unit.head.i not in moved:
        prep = unit.head
        if prep.lower_ in ("of", "because") or prep.tag_ != "IN":
            return None
        clause = [t.i for t in _clause(pred, moved) if t.i not in moved and not t.is_punct]
        if clause and clause[-1] != prep.i:
            # A preposition is stranded only at the end ("Who did he give it to?");
            # elsewhere it goes to the front ("In which review were the plans announced
            # in December?").
            wh = f"{prep.lower_} {'whom' if wh == 'who' else wh}"
            moved = moved | {prep.i}
    return _front(doc, pred, wh, moved)


def _front(doc, pred, wh: str, moved: set[int]) -> str | None:
    """`wh` fronted before the inverted clause of `pred`, without the tokens `moved`."""
    if pred is None or any(c.dep_ == "neg" for c in pred.children):
        return None
    subject = next((c for c in pred.children if c.dep_ in _SUBJECTS), None)
    while subject is None and pred.dep_ == "xcomp":
        # "is to rise by £1,400": the subject and the inversion belong to the verb above.
        pred = pred.head
        subject = next((c for c in pred.children if c.dep_ in _SUBJECTS), None)
    if subject is None or subject.i in moved or subject.tag_ in ("WDT", "WP", "EX"):
        return None  # no subject, a relative pronoun, or "there is"
    sub_first, sub_last = _subtree_span(subject)
    auxes = [c for c in pred.children if c.dep_ in _AUX and c.i < pred.i]
    body = [t for t in _clause(pred, moved) if t.i not in moved]
    if any(t.tag_ in _RELATIVE for t in body if not isinstance(t, tuple)):
        return None  # a relative clause's pronoun left behind ("improve under which")
    if auxes:
        front: list = [_CONTRACTED.get(auxes[0].lower_, auxes[0].lower_)]
        body = [t for t in body if t.i != auxes[0].i]
    elif pred.lemma_ == "be" or pred.pos_ == "AUX":
        front = [_CONTRACTED.get(pred.lower_, pred.lower_)]
        body = [t for t in body if t.i != pred.i]
    else:
        do = _DO.get(pred.tag_)
        if do is None:
            return None
        front = [do]
        body = [(t, t.lemma_) if t.i == pred.i else t for t in body]
    pos = [t[0].i if isinstance(t, tuple) else t.i for t in body]
    subj = [t for t, i in zip(body, pos) if sub_first <= i < sub_last]
    opening = [t for t, i in zip(body, pos) if i < sub_first]  # "On Friday, ..." moves last
    after = [t for t, i in zip(body, pos) if i >= sub_last]
    parts = [wh, _render(front), _render(subj, first=True), _render(after), _render(opening)]
    return _finish(" ".join(p for p in parts if p))


def _wh_phrase(doc, span: Span, rng) -> tuple[str, tuple[int, int]] | None:
    """The wh-phrase asking for `span`, and the tokens it replaces (the answer itself, or
    the noun phrase whose number it is)."""
    root = doc[span.first:span.last].root
    kind = span.kind
    unit = (span.first, span.last)
    head_outside = not span.first <= root.head.i < span.last
    if kind in ("count", "quantity") and root.dep_ in ("nummod", "quantmod", "amod") \
            and head_outside and root.head.tag_ in ("NNS", "NNPS"):
        noun = root.head
        # "about 12,000 North Korean troops" -> "how many North Korean troops".
        first = _subtree_span(noun)[0]
        kept = [t for t in doc[first:noun.i + 1] if not span.first <= t.i < span.last
                and t.dep_ not in ("det", "predet", "advmod", "quantmod", "punct")]
        return "how many " + _render(kept), (min(first, span.first), noun.i + 1)
    if root.dep_ == "poss" and head_outside:
        if kind != "person":
            return None
        noun = root.head
        rest = [t for t in doc[span.last:noun.i + 1] if t.dep_ != "case"]
        return "whose " + _render(rest), (span.first, noun.i + 1)
    if head_outside and root.dep_ in ("compound", "amod", "nummod", "quantmod", "nmod",
                                      "npadvmod" if root.head.pos_ == "ADJ" else "-"):
        return None  # a modifier inside a bigger phrase
    if kind == "person":
        return "who", unit
    if kind == "date":
        if re.fullmatch(r"\d{4}", doc[span.first:span.last].text):
            return rng.choice(("what year", "when")), unit
        return "when", unit
    if kind == "time":
        return rng.choice(("when", "what time")), unit
    if kind in ("money", "quantity"):
        return "how much", unit
    if kind == "percent":
        return rng.choice(("what percentage", "how much")), unit
    if kind == "count":
        return rng.choice(("how many", "what number")), unit
    if kind in ("organisation", "thing"):
        head = _common_head(doc, span)
        # "which bank" for "the central bank", never for a bare "the bank".
        if head and span.last - span.first > 1 and (kind == "organisation" or rng.random() < 0.4):
            return f"which {head}", unit
        return ("what" if kind == "thing" else rng.choice(("what", "which organisation"))), unit
    if kind == "group":
        return rng.choice(("which group", "who")), unit
    if kind == "place":
        return rng.choice(("what", "which place")), unit
    if kind == "clause":
        return "what", unit
    return None


def _common_head(doc, span: Span) -> str | None:
    """The common noun heading an answer ("the central bank" -> "bank"), if any."""
    root = doc[span.first:span.last].root
    if root.pos_ == "NOUN" and root.tag_ == "NN" and root.is_alpha:
        return root.lower_
    return None


def _identity_question(doc, span: Span, appos) -> str | None:
    """An apposition answers "who/what is X?" ("Sergei Shoigu, Russia's defence minister"):
    the answer has to be the whole apposition."""
    a_first, a_last = _subtree_span(appos)
    while a_last > a_first and doc[a_last - 1].is_punct:
        a_last -= 1
    while a_first < a_last and (doc[a_first].lower_ in ("the", "a", "an")
                                or doc[a_first].is_punct):
        a_first += 1
    if (a_first, a_last) != (span.first, span.last):
        return None
    named = appos.head
    first, last = _subtree_span(named)
    name = [t for t in doc[first:min(last, a_first)]
            if t.text not in _EDGE_PUNCT and t.dep_ not in ("det",) and t.i >= named.left_edge.i]
    if not name or len(name) > 8 or named.pos_ == "PRON":
        return None
    wh = "who" if span.kind == "person" or named.ent_type_ == "PERSON" else "what"
    return _finish(f"{wh} is {_render(name, first=True)}")


def _predicate(tok):
    """The nearest verb (or copula) above `tok`, or None."""
    node = tok.head
    while True:
        if node.pos_ in ("VERB", "AUX"):
            return node
        if node.head.i == node.i:
            return None
        node = node.head


def _subtree_span(tok) -> tuple[int, int]:
    sub = list(tok.subtree)
    return sub[0].i, sub[-1].i + 1


def _whole_phrase(unit, unit_last: int, answer_last: int) -> bool:
    """Whether the answer ends where its phrase does: nothing of `unit`'s phrase follows
    it but punctuation, a relative clause or an apposition (which go with it). An answer
    "length" of "the length of maternity pay" would teach the reader to cut answers short."""
    last = max(unit_last, answer_last)
    for child in unit.rights:
        if child.i >= last and not (child.is_punct or child.dep_ in ("relcl", "acl", "appos")):
            return False
    return True


def _clause(pred, keep: set[int]) -> list:
    """The tokens of `pred`'s own clause in order: other clauses, parentheses and edge
    punctuation are dropped, unless they hold a token of `keep`."""
    out = []

    def visit(tok) -> None:
        for child in tok.children:
            first, last = _subtree_span(child)
            holds = any(first <= i < last for i in keep)
            if not holds and (child.dep_ in _DROPPED or child.text in _EDGE_PUNCT
                              or (child.dep_ in ("ccomp", "relcl", "acl")
                                  and last - first > 8)):
                continue
            visit(child)
        out.append(tok)

    visit(pred)
    out.sort(key=lambda t: t.i)
    return [t for t in out if not _in_parentheses(t, keep)]


def _in_parentheses(tok, keep: set[int]) -> bool:
    doc = tok.doc
    opened = None
    for t in doc[:tok.i + 1]:
        if t.text == "(":
            opened = t.i
        elif t.text == ")":
            opened = None
    if opened is None:
        return False
    close = next((t.i for t in doc[tok.i:] if t.text == ")"), len(doc))
    return not any(opened < i < close for i in keep)


def _render(items, first: bool = False) -> str:
    """Tokens (or strings, or (token, replacement) pairs) as text. Tokens adjacent in the
    sentence keep their spacing; others are separated by one space. With `first`, the
    sentence's opening word is lower-cased unless it is a name."""
    out: list[str] = []
    previous = None
    for item in items:
        if isinstance(item, str):
            text, tok = item, None
        elif isinstance(item, tuple):
            tok, text = item
        else:
            tok, text = item, item.text
        if tok is not None and text == tok.text and _sentence_initial(tok):
            text = text.lower()
        if out:
            glued = (tok is not None and previous is not None and tok.i == previous.i + 1
                     and not previous.whitespace_)
            out.append(text if glued else " " + text)
        else:
            out.append(text)
        previous = tok
    return "".join(out).strip()


def _sentence_initial(tok) -> bool:
    """A word capitalised only because it opens the sentence or a quotation."""
    if not tok.text[:1].isupper() or tok.pos_ == "PROPN" or tok.ent_type_ or tok.text == "I":
        return False
    return tok.i == 0 or tok.doc[tok.i - 1].text in _EDGE_PUNCT


def _finish(text: str) -> str | None:
    """Tidy a question: spacing, quotes, a capital and a question mark; None when too short
    or too long to be a real question."""
    text = re.sub(r"\s+([,.;:!?%)])", r"\1", text)
    text = re.sub(r"\s+", " ", text.translate(_QUOTES)).strip(" ,;:-–—")
    text = text.rstrip(".!?,;: ")
    words = text.split()
    if len(words) < 3 or len(words) > MAX_QUESTION_WORDS:
        return None
    return text[0].upper() + text[1:] + "?"
