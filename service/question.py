"""Question analysis for the reader: the expected answer type and the words to look for.

The answer type comes from the wh-word and, for "what"/"which" questions, the head
noun they modify ("which agency" -> organisation, "what year" -> date); the focus
terms are the question's content words with their lemmas, which the reader matches
against evidence sentences and weights by IDF; its words with known opposites let the
reader notice a sentence that says the opposite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANSWER_TYPES = (
    "count", "quantity", "money", "percent", "duration", "date", "person", "organisation",
    "place", "why", "how", "yes_no", "noun_phrase",
)

# spaCy entity labels that can answer each type; types absent here are untyped.
TYPE_LABELS: dict[str, frozenset[str]] = {
    "count": frozenset({"CARDINAL", "QUANTITY", "ORDINAL"}),
    "quantity": frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"}),
    "money": frozenset({"MONEY"}),
    "percent": frozenset({"PERCENT"}),
    "duration": frozenset({"DATE", "TIME", "QUANTITY", "CARDINAL"}),
    "date": frozenset({"DATE", "TIME", "EVENT"}),
    "person": frozenset({"PERSON"}),
    "organisation": frozenset({"ORG", "NORP"}),
    "place": frozenset({"GPE", "LOC", "FAC"}),
}

# Head nouns of "what X"/"which X" questions, by the type they ask for.
_HEAD_NOUNS: dict[str, frozenset[str]] = {
    "date": frozenset("year date day month decade century time period era week season "
                      "morning evening night hour weekday".split()),
    "person": frozenset("person man woman people official leader minister president "
                        "politician player actor author writer singer king queen emperor "
                        "general commander scientist artist individual spokesman spokesperson "
                        "diplomat envoy adviser advisor chief head member".split()),
    "organisation": frozenset("company organisation organization group team agency party "
                              "university institution band club firm business newspaper "
                              "network council body service ministry department committee "
                              "government army force bank court outlet media broadcaster "
                              "channel union alliance school college corporation".split()),
    "place": frozenset("country city state region place town continent island river area "
                       "location province county nation capital village border territory "
                       "district site front port sea ocean mountain peninsula".split()),
    "count": frozenset("number".split()),
    "quantity": frozenset("amount size quantity total population range height length "
                          "distance weight".split()),
    "money": frozenset("price cost fee salary budget sum".split()),
    "percent": frozenset("percentage percent share proportion rate".split()),
    "duration": frozenset("duration".split()),
}

NEGATIONS = frozenset("not n't never without nothing nobody none neither nor".split())
# Words that make a wh-phrase ask for an increment ("how many *more* troops", "how many
# *additional* soldiers"), and the words that mark one in an article's sentence.
ADDITIVE = frozenset("more additional extra further another new".split())
INCREMENT = frozenset("additional addition more further another extra new fresh add "
                      "reinforcement latest recent recently".split())
_WH_WORDS = frozenset("what which who whom whose when where why how".split())
_AUX_START = frozenset("is are was were do does did can could will would should has have had "
                       "may might must shall".split())
_HOW_ADJ = {
    "many": "count", "much": "quantity", "long": "duration", "old": "quantity",
    "far": "quantity", "big": "quantity", "large": "quantity", "tall": "quantity",
    "high": "quantity", "often": "quantity", "deep": "quantity", "wide": "quantity",
    "heavy": "quantity", "few": "count",
}
_MONEY_NOUNS = frozenset("money dollars euros cost price pay paid".split())
_TIME_NOUNS = frozenset("time years months weeks days hours minutes".split())
_WHY_RE = re.compile(r"\bwhy\b|\bfor what (reason|purpose)\b|\bwhat (caused|causes|led to)\b|"
                     r"\bwhat was the (reason|cause|purpose)\b|\bwhat is the (reason|cause|purpose)\b")
_STOP = frozenset("what which who whom whose when where why how many much long the a an of "
                  "in on at to for by with from is are was were be been being do does did "
                  "has have had and or as that this these those it its their his her they "
                  "he she there according than into about also not no".split())


@dataclass(frozen=True, slots=True)
class Question:
    """A parsed question: its answer type and the content words the answer should sit near."""

    text: str
    answer_type: str  # one of ANSWER_TYPES
    wh: str  # the wh-word ("" for yes/no and imperative questions)
    head_noun: str  # lemma of the noun a "what/which/how many" modifies, or ""
    terms: tuple[str, ...]  # content words, lower-cased surface forms (for IDF look-ups)
    lemmas: tuple[str, ...]  # their lower-cased lemmas, aligned with `terms`
    root_lemma: str  # lemma of the main verb, "" when it is a form of "be"/"do"/"have"
    doc: object  # the spaCy Doc of the question
    negated: bool = False  # asks about what is not the case ("what did not ...")
    # Where the answer sits in the question's parse: the lemmas the wh-phrase hangs from
    # (its head, and the head's head when that is a preposition) and its relation to them.
    anchors: frozenset[str] = frozenset()
    slot: str = ""
    additive: bool = False  # the wh-phrase asks for an increment ("how many more ...")
    specific: frozenset[str] = frozenset()  # its names and numbers, lower-cased
    # Each word with known opposites: (its forms, its opposites), e.g. "least" -> "most".
    opposites: tuple[tuple[frozenset[str], frozenset[str]], ...] = ()

    @property
    def labels(self) -> frozenset[str]:
        """Entity labels that can answer this question (empty when the type is untyped)."""
        return TYPE_LABELS.get(self.answer_type, frozenset())


def analyse(nlp, text: str) -> Question:
    """Parse `text` once with spaCy and return its answer type and focus terms."""
    # Nothing here reads the question's entities, and the recogniser was 40% of the parse
    # (identical analyses on all 766 bundled and SQuAD questions without it).
    doc = nlp(text.strip(), disable=["ner"])
    wh_tok = next((t for t in doc if t.lower_ in _WH_WORDS), None)
    wh = wh_tok.lower_ if wh_tok is not None else ""
    head = _head_noun(wh_tok) if wh_tok is not None else ""
    answer_type = _answer_type(doc, text.lower(), wh, wh_tok, head)
    terms: list[str] = []
    lemmas: list[str] = []
    seen: set[str] = set()
    for tok in doc:
        low = tok.lower_
        if tok.is_punct or tok.is_space or low in _STOP or tok.is_stop and tok.pos_ != "NUM":
            continue
        lemma = tok.lemma_.lower() or low
        if low in seen:
            continue
        seen.add(low)
        terms.append(low)
        lemmas.append(lemma)
    root = next((t for t in doc if t.dep_ == "ROOT"), None)
    root_lemma = ""
    if root is not None and root.pos_ in ("VERB", "AUX") and root.lemma_ not in ("be", "do", "have"):
        root_lemma = root.lemma_.lower()
    phrase = _wh_phrase(wh_tok)
    anchors, slot = _slot(phrase)
    # "how many more troops", "how much more money" (where "much" ends the phrase early).
    additive = phrase is not None and any(
        t.lower_ in ADDITIVE for t in (*phrase.subtree, *doc[wh_tok.i + 1:wh_tok.i + 3])
        if t is not wh_tok)
    return Question(text, answer_type, wh, head, tuple(terms), tuple(lemmas), root_lemma, doc,
                    any(is_negation(t.lower_, t.dep_) for t in doc), anchors, slot, additive,
                    frozenset(t.lower_ for t in doc
                              if (t.pos_ in ("PROPN", "NUM") or t.like_num) and not t.is_punct),
                    _opposites(doc))


def _wh_phrase(wh_tok):
    """The head of the wh-phrase: the noun a wh-word modifies ("which agency", "how many
    troops"), else the wh-word itself; None without a wh-word."""
    if wh_tok is None:
        return None
    phrase = wh_tok
    while phrase.dep_ in ("det", "amod", "advmod", "nummod") and phrase.head is not phrase \
            and phrase.head.pos_ in ("NOUN", "PROPN", "ADJ"):
        phrase = phrase.head
    return phrase


def _slot(phrase) -> tuple[frozenset[str], str]:
    """The words the wh-phrase attaches to and its dependency relation ("who did X sign the
    treaty with" -> ({"with", "sign"}, "pobj")): the answer fills the same slot in a sentence."""
    if phrase is None:
        return frozenset(), ""
    head = phrase.head
    if head is phrase:
        return frozenset(), ""
    anchors = set()
    for tok in (head, head.head if head.pos_ == "ADP" else head):
        lemma = tok.lemma_.lower()
        if lemma not in ("be", "do", "have") and not tok.is_punct:
            anchors.add(lemma)
    return frozenset(anchors), slot_relation(phrase.dep_)


def slot_relation(dep: str) -> str:
    """A dependency label with passive subjects and copular attributes counted as subjects,
    so "who was elected" and "X was elected" fill the same slot."""
    return "nsubj" if dep in ("nsubjpass", "attr") else dep


def is_negation(lower: str, dep: str) -> bool:
    """Whether a token negates its clause ("not", "n't", "never", "without", "nothing" ...)."""
    return dep == "neg" or lower in NEGATIONS


def _head_noun(wh_tok) -> str:
    """The noun a wh-determiner or "how many" modifies ("which *agency*", "how many *troops*")."""
    if wh_tok.dep_ in ("det", "amod", "advmod", "nummod") or wh_tok.lower_ == "how":
        head = wh_tok.head
        # "how many troops": how -> many -> troops
        if head.pos_ == "ADJ" and head.head is not head:
            head = head.head
        if head.pos_ in ("NOUN", "PROPN") and head.i > wh_tok.i:
            return head.lemma_.lower()
    # "what is the estimated number of ...", "what kind of missile": the attribute noun,
    # reached only through auxiliaries, determiners and modifiers (not through a subject).
    if wh_tok.lower_ in ("what", "which"):
        doc = wh_tok.doc
        for tok in doc[wh_tok.i + 1:]:
            if tok.pos_ == "NOUN":
                if tok.lower_ in ("kind", "type", "sort", "name", "form"):
                    after = [t for t in doc[tok.i + 1:] if t.pos_ in ("NOUN", "PROPN")]
                    if tok.i + 1 < len(doc) and doc[tok.i + 1].lower_ == "of" and after:
                        return after[0].lemma_.lower()
                return tok.lemma_.lower()
            # "what is the number of ..." names its type; "what did the committee ..." does not.
            if (tok.pos_ == "AUX" and tok.lemma_ == "be") or tok.pos_ in ("DET", "ADJ", "ADV") \
                    or tok.dep_ == "amod":
                continue
            break
    return ""


def _answer_type(doc, lowered: str, wh: str, wh_tok, head: str) -> str:
    if _WHY_RE.search(lowered):
        return "why"
    if wh == "how":
        nxt = doc[wh_tok.i + 1].lower_ if wh_tok.i + 1 < len(doc) else ""
        if nxt in _HOW_ADJ:
            kind = _HOW_ADJ[nxt]
            if nxt == "much" and (head in _MONEY_NOUNS or "cost" in lowered or "pay" in lowered):
                return "money"
            if nxt == "much" and head in _TIME_NOUNS:
                return "duration"
            if nxt == "many" and head in ("year", "month", "week", "day", "hour", "minute"):
                return "duration" if "ago" not in lowered else "count"
            return kind
        return "how"
    if wh == "when":
        return "date"
    if wh in ("who", "whom", "whose"):
        return "person"
    if wh == "where":
        return "place"
    if wh in ("what", "which"):
        if "percent" in lowered or "percentage" in lowered:
            return "percent"
        for kind, nouns in _HEAD_NOUNS.items():
            if head in nouns:
                return kind
        return "noun_phrase"
    if doc and doc[0].lower_ in _AUX_START:
        return "yes_no"
    return "noun_phrase"


# Opposite words: degree words, and common dimension, order and direction words. A
# question that uses one where the evidence uses its opposite ("the least difficult"
# against "the most difficult") is a classic unanswerable look-alike.
_OPPOSITE_PAIRS = (
    "most least", "more less", "more few", "many few", "large small", "big small",
    "high low", "long short", "wide narrow", "deep shallow", "heavy light", "fast slow",
    "strong weak", "old young", "old new", "early late", "easy hard", "easy difficult",
    "simple complex", "good bad", "rich poor", "common rare", "positive negative",
    "private public", "internal external", "upper lower", "major minor", "maximum minimum",
    "first last", "before after", "increase decrease", "rise fall", "gain lose", "win lose",
    "accept reject", "include exclude", "import export", "buy sell", "above below",
    "north south", "east west", "northern southern", "eastern western", "same different",
    "similar different", "true false",
)


def _opposite_table(pairs: tuple[str, ...]) -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for pair in pairs:
        a, b = pair.split()
        table.setdefault(a, set()).add(b)
        table.setdefault(b, set()).add(a)
    return {word: frozenset(others) for word, others in table.items()}


_OPPOSITES = _opposite_table(_OPPOSITE_PAIRS)
# A negating prefix makes an opposite of any word: possible / impossible, known / unknown.
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "non", "non-", "dis")


def _opposites(doc) -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
    """For each question word with known opposites: (its forms, its opposites)."""
    out = []
    for t in doc:
        if t.is_punct or t.like_num:
            continue
        forms = frozenset({t.lower_, t.lemma_.lower()})
        opposite: set[str] = set()
        for w in forms:
            opposite |= _OPPOSITES.get(w, frozenset())
            if len(w) >= 4 and t.pos_ in ("ADJ", "ADV", "VERB", "NOUN"):
                opposite.update(p + w for p in _NEGATING_PREFIXES)
                opposite.update(w[len(p):] for p in _NEGATING_PREFIXES
                                if w.startswith(p) and len(w) - len(p) >= 4)
        if opposite:
            out.append((forms, frozenset(opposite - forms)))
    return tuple(out)
