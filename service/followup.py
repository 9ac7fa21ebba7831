"""Follow-up questions in a conversation: what each pronoun stands for.

A follow-up ("who did he meet?", "and how many more were sent later?") leans on earlier
turns. `resolve` puts a referent in place of each of its pronouns for the reader: first
the previous answer, when it is of the pronoun's kind (he/she: a person; it: a thing,
organisation or place; they: people, a group or a plural; there: a place), then the
earlier questions' entities and noun phrases. A wh-phrase that lost its noun gets the
earlier question's. The kinds come from spaCy's entity labels, the parse (number,
determiners) and the expected answer type of the question answered, never from a topic.
A referent goes in as a phrase that keeps the question grammatical ("it" -> "the
message", "its" -> "the treaty's", "there" -> "in Glasgow"); the earlier question's
phrases also go to the retrieval query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.chat import Message, answer_in_reply
from service.qa import MAX_QUESTION_CHARS
from service.question import analyse

# Earlier user questions searched (most recent first) for what a follow-up refers to.
CONTEXT_TURNS = 3
# Which pronouns can stand for what. A pronoun's class is "he" (he/she and their forms),
# "it", "they", or "there" (a place adverb).
_PRONOUN_CLASS = {
    "he": "he", "him": "he", "his": "he", "she": "he", "her": "he", "hers": "he",
    "it": "it", "its": "it", "they": "they", "them": "they", "their": "they", "theirs": "they",
}
_POSSESSIVE = frozenset("his hers its their theirs".split())
# Entity labels and the pronoun classes that can refer to such an entity: an organisation
# is "it" or "they" (British usage), a country or city "there" or "it".
_LABEL_FITS: dict[str, frozenset[str]] = {
    "PERSON": frozenset({"he"}),
    "ORG": frozenset({"it", "they"}),
    "NORP": frozenset({"they"}),
    "GPE": frozenset({"there", "it"}),
    "LOC": frozenset({"there", "it"}),
    "FAC": frozenset({"there", "it"}),
    "EVENT": frozenset({"it"}),
    "PRODUCT": frozenset({"it"}),
    "LAW": frozenset({"it"}),
    "WORK_OF_ART": frozenset({"it"}),
}
# Values no pronoun stands for ("when did *it* happen?" never means "June 4").
_VALUE_LABELS = frozenset("DATE TIME CARDINAL ORDINAL QUANTITY MONEY PERCENT".split())
# Answer types (service.question) whose answers are referents, and of which kind.
_TYPE_FITS: dict[str, frozenset[str]] = {
    "person": _LABEL_FITS["PERSON"],
    "organisation": _LABEL_FITS["ORG"],
    "place": _LABEL_FITS["GPE"],
}
_UNTYPED = frozenset({"noun_phrase"})
_MEASURES = frozenset({"percent", "money", "date", "duration", "quantity"})
_PLACE_LABELS = frozenset(label for label, fits in _LABEL_FITS.items() if "there" in fits)
_CONNECTIVES = frozenset("and but so also then plus".split())
_WH = frozenset("what which who whom whose when where why how".split())
_QUANTIFIERS = frozenset("many much more few fewer less else other others".split())
_LEADING = frozenset("how many much what which whose the a an this that these those".split())


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a chat turn asks: the question the reader reads and the query retrieval runs."""

    question: str
    query: str
    follow_up: bool
    carried: tuple[str, ...] = ()  # phrases taken over from earlier turns


@dataclass(frozen=True, slots=True)
class Referent:
    """Something a pronoun can stand for."""

    text: str  # as the conversation wrote it (what retrieval gets)
    phrase: str  # as it reads in a pronoun's place: "the message" for "a message"
    fits: frozenset[str]  # the pronoun classes that can refer to it


def _fits_by_number(span) -> frozenset[str]:
    """A noun phrase with no telling label: "they" when plural or coordinated, else "it"."""
    root = span.root
    plural = root.tag_ in ("NNS", "NNPS") or any(c.dep_ == "conj" for c in root.children)
    return frozenset({"they"}) if plural else frozenset({"it"})


def _definite(span) -> str:
    """A noun phrase as a second mention reads: "a message" -> "the message", "message" ->
    "the message"; names, possessed and already definite phrases unchanged."""
    toks = list(span)
    if not toks:
        return ""
    first = toks[0]
    if first.lower_ in ("a", "an"):
        return "the " + span.doc[first.i + 1:span.end].text
    if first.pos_ == "DET":
        # Mid-sentence: "The meeting" as an article's sentence began it reads "the meeting".
        return first.lower_ + span.text[len(first.text):]
    if first.tag_ == "PRP$":
        return span.text
    # A name, a possessed phrase ("North Korea's support") or a number needs no article.
    if span.root.pos_ != "NOUN" or any(t.dep_ == "poss" or t.tag_ == "POS" for t in toks):
        return span.text
    return "the " + span.text


def _entity_referent(ent) -> Referent | None:
    """An entity of a question as a referent; None for values, adjectives ("North Korean")
    and names that modify a noun."""
    fits = _LABEL_FITS.get(ent.label_)
    # A name that only modifies a noun ("the *US* media giant") is not what the phrase means.
    if fits is None or ent.root.pos_ not in ("PROPN", "NOUN") \
            or ent.root.dep_ in ("compound", "amod"):
        return None
    before = ent.doc[ent.start - 1] if ent.start else None
    # "the Kremlin", "the BBC": spaCy leaves the article out of the entity.
    phrase = f"the {ent.text}" if before is not None and before.lower_ == "the" else ent.text
    return Referent(ent.text, phrase, fits)


@dataclass(frozen=True, slots=True)
class _Context:
    referents: tuple[Referent, ...]  # subjects first, then entities and noun phrases
    head: Referent | None  # the noun phrase a "how many"/"which" question asked about
    subject: Referent | None  # the question's active subject ("did X deploy")
    names: tuple[Referent, ...]  # proper names not labelled as persons (a fallback for "he")
    phrases: list[str]  # everything worth carrying into retrieval, in order


def _whole_words(span):
    """`span` widened to whole hyphenated words: spaCy may cut "a super-casino" after "super"."""
    doc, start, end = span.doc, span.start, span.end
    while end < len(doc) and not doc[end - 1].whitespace_ and "-" in (doc[end - 1].text,
                                                                       doc[end].text):
        end += 1
    while start > 0 and not doc[start - 1].whitespace_ and "-" in (doc[start - 1].text,
                                                                    doc[start].text):
        start -= 1
    return doc[start:end]


def _strip(span):
    """A noun chunk without its wh-words, quantifiers and determiners ("how many X" -> "X")."""
    span = _whole_words(span)
    toks = list(span)
    while toks and (toks[0].lower_ in _LEADING or toks[0].lower_ in _QUANTIFIERS
                    or toks[0].pos_ in ("DET", "PRON")):
        toks = toks[1:]
    if not toks:
        return None
    return span.doc[toks[0].i:toks[-1].i + 1]


def _phrase_referent(span) -> Referent:
    fits = _LABEL_FITS.get(span.root.ent_type_) or _fits_by_number(span)
    return Referent(span.text, _definite(span), fits)


def _context(nlp, text: str) -> _Context:
    doc = nlp(text)
    # A question after a percentage, a date or an amount asks about a measure ("what
    # percentage", "which year"): that is no referent. A count's noun is ("how many troops").
    measure = analyse(nlp, text).answer_type in _MEASURES
    found = [(e.root, r) for e in doc.ents if (r := _entity_referent(e)) is not None]
    head = None
    phrases: list[str] = [r.text for _, r in found]
    for chunk in doc.noun_chunks:
        if chunk.root.pos_ == "PRON" or chunk.root.lower_ in _WH or chunk.text == "-":
            continue
        stripped = _strip(chunk)
        if stripped is None:
            continue
        ref = _phrase_referent(stripped)
        if not any(ref.text in p for p in phrases):
            phrases.append(ref.text)
        asked = any(t.lower_ in _WH for t in chunk) or any(
            t.lower_ in _WH for t in chunk.root.children)
        if asked and measure:
            continue
        if asked and head is None:
            head = ref
        if not any(ref.text in r.text or r.text in ref.text for _, r in found):
            found.append((chunk.root, ref))
    # Subjects first: what a question is about is what its next one most likely means.
    found.sort(key=lambda f: f[0].dep_ not in ("nsubj", "nsubjpass"))
    referents = [r for _, r in found]
    names = tuple(Referent(e.text, e.text, frozenset({"he"})) for e in doc.ents
                  if e.root.pos_ == "PROPN" and e.label_ not in _PLACE_LABELS | {"NORP"})
    # The subject that is not itself the asked-about phrase ("which region did X deploy").
    subj = next((t for t in doc if t.dep_ == "nsubj" and t.pos_ != "PRON"
                 and t.lower_ not in _WH and not any(c.lower_ in _WH for c in t.subtree)), None)
    subject = None
    if subj is not None:
        span = _strip(doc[subj.left_edge.i:subj.right_edge.i + 1])
        if span is not None:
            ent = next((e for e in doc.ents if e.start <= span.root.i < e.end
                        and e.start >= span.start and e.end <= span.end), None)
            subject = (_entity_referent(ent) if ent is not None else None) \
                or _phrase_referent(span)
    return _Context(tuple(referents), head, subject, names, phrases)


def previous_answer(nlp, messages: Sequence[Message]) -> Referent | None:
    """What the last assistant turn answered, when a pronoun can stand for it.

    The kind comes first from the question it answered: a "who" question is answered by a
    person, "which country" by a place (the reader was asked for that type); then from the
    answer's entity label in the reply; then from its grammatical number. Dates, numbers,
    reasons and yes/no answers are no referents.
    """
    turns = list(messages[:-1])
    at = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].role == "assistant"), None)
    if at is None:
        return None
    asked = next((m.content for m in reversed(turns[:at]) if m.role == "user"), "")
    found = answer_in_reply(turns[at].content)
    if found is None or not asked.strip():
        return None
    doc = nlp(found.text)
    span = doc.char_span(found.start, found.end, alignment_mode="expand")
    # "in Glasgow" answers "where"; the place is "Glasgow".
    while span is not None and len(span) > 1 and span[0].pos_ == "ADP":
        span = span[1:]
    if span is None or not len(span):
        return None
    answer_type = analyse(nlp, asked).answer_type
    if answer_type not in _TYPE_FITS and answer_type not in _UNTYPED:
        return None
    wanted = _TYPE_FITS.get(answer_type)
    if not found.own or span.root.pos_ in ("VERB", "AUX"):
        # Another client's words, or a sentence rather than a value: only a name in it is
        # taken for the answer, the first of the asked kind (the first of any kind when
        # the question named none).
        ent = next((e for e in span.ents if e.label_ in _LABEL_FITS
                    and (wanted is None or _LABEL_FITS[e.label_] == wanted)), None)
        return _entity_referent(ent) if ent is not None else None
    inner = next((e for e in span.ents if e.label_ in _LABEL_FITS
                  and _LABEL_FITS[e.label_] == wanted), None)
    if inner is not None and any(t.pos_ != "DET" for t in span
                                 if not inner.start <= t.i < inner.end):
        # "assistant to sculptor Henry Moore" answers "who": the person is Henry Moore.
        span = inner
    label = next((e.label_ for e in doc.ents if e.start <= span.root.i < e.end), "")
    if label in _VALUE_LABELS or span.root.like_num:
        return None
    determined = span[0].pos_ == "DET" or span.root.pos_ == "NOUN"
    # A name answers "who"; "the Tories" or "ministers" do not, whatever was asked.
    if answer_type in _TYPE_FITS and not (answer_type == "person" and determined):
        fits = _TYPE_FITS[answer_type]
    elif label in _LABEL_FITS and not (label == "PERSON" and determined):
        fits = _LABEL_FITS[label]
    else:
        fits = _fits_by_number(span)
    return Referent(span.text, _definite(span), fits)


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


def _is_possessive(t) -> bool:
    return t.lower_ in _POSSESSIVE or t.tag_ == "PRP$"


def _governor(t):
    """The word a pronoun is an argument of: its head, or the preposition's head."""
    head = t.head
    return head.head if head.pos_ == "ADP" and head.head is not head else head


def _mention_fits(t) -> frozenset[str]:
    """The pronoun classes that can refer to the noun or name `t` heads."""
    ent = next((e for e in t.doc.ents if e.start <= t.i < e.end), None)
    if ent is not None:
        return _LABEL_FITS.get(ent.label_, frozenset())
    if t.pos_ == "NOUN":
        return _fits_by_number(t.doc[t.left_edge.i:t.right_edge.i + 1])
    return frozenset()


def _bound_inside(t, cls: str) -> bool:
    """Whether pronoun `t` can refer to a subject in its own question ("what did TimeWarner
    say *it* owns", "what did Shoigu say about *his* visit"): a subject of its kind, of a
    verb that `t` sits under without being that verb's own argument (a possessive may be)."""
    for m in t.doc:
        if m.dep_ != "nsubj" or m.i >= t.i or m.pos_ == "PRON" or cls not in _mention_fits(m):
            continue
        verb = m.head
        if any(x.i == t.i for x in verb.subtree) and (_is_possessive(t) or _governor(t) != verb):
            return True
    return False


def _pronoun_class(t) -> str:
    """The class of a referring pronoun ("he", "it", "they", "there"), or ""."""
    low = t.lower_
    if low == "there":
        # "meet there", "from there"; not the "there" of "were there any ...".
        return "there" if t.dep_ in ("advmod", "pcomp", "pobj") else ""
    cls = _PRONOUN_CLASS.get(low, "")
    if cls and (t.pos_ == "PRON" or _is_possessive(t)):
        return cls
    return ""


def _candidates(cls: str, t, answer: Referent | None, contexts: Sequence[_Context]):
    """Referents for pronoun `t` of class `cls`, most likely first."""
    if answer is not None and cls in answer.fits:
        yield answer
    for n, c in enumerate(contexts):
        if cls in ("it", "they"):
            # An active subject ("did it deploy") stands for the earlier question's subject,
            # anything else first for what that question asked about, unless the answer
            # named it ("which city ..." -> "Glasgow": "it" is no longer "the city").
            if t.dep_ == "nsubj" and c.subject is not None:
                yield c.subject
            answered = n == 0 and answer is not None and c.head is not None
            if c.head is not None and not answered:
                yield c.head
            if answered:
                yield from (r for r in c.referents if r.text != c.head.text)
                continue
        yield from c.referents
    if cls == "he":
        for c in contexts:
            yield from c.names


def resolve(nlp, messages: Sequence[Message]) -> Resolved:
    """The question and retrieval query for the last user message, given the earlier ones.

    The earlier questions that serve as context are read resolved themselves, so that a
    referent stays in the conversation after the turn that named it ("who ...?" ->
    "Sarah Claxton"; "what time did she set?"; "where did she move from?").
    """
    users = [k for k, m in enumerate(messages) if m.role == "user" and m.content.strip()]
    if not users or users[-1] != len(messages) - 1:
        current = messages[-1].content.strip() if messages else ""
        return Resolved(current, current, False)
    texts = {k: messages[k].content.strip() for k in users}
    parsed: dict[str, _Context] = {}
    first = max(0, len(users) - CONTEXT_TURNS - 1)
    for n in range(first, len(users)):
        k = users[n]
        resolved = _resolve_turn(nlp, messages[:k + 1], [texts[j] for j in users[:n]], parsed)
        texts[k] = resolved.question
    return resolved


def _resolve_turn(nlp, messages: Sequence[Message], earlier: list[str],
                  parsed: dict[str, _Context]) -> Resolved:
    """`resolve` for the last message, given the earlier user questions (resolved)."""
    current = messages[-1].content.strip()
    if not earlier:
        return Resolved(current, current, False)
    doc = nlp(current)
    toks = list(doc)
    connective = bool(toks) and toks[0].lower_ in _CONNECTIVES
    pronouns = {t.i: cls for t in toks if (cls := _pronoun_class(t))
                and (cls == "there" or not _bound_inside(t, cls))}
    # "how many more were ...", "which ones ...": a wh-phrase with no noun of its own.
    bare_wh = None
    for t in toks:
        if t.lower_ in ("how", "which", "what") and t.i + 1 < len(toks):
            j = t.i + 1
            while j < len(toks) and toks[j].lower_ in _QUANTIFIERS:
                j += 1
            # ... but "how much did its profits jump" asks a degree, no noun missing.
            if j > t.i + 1 and (j == len(toks) or toks[j].pos_ not in ("NOUN", "PROPN", "ADJ")) \
                    and toks[j - 1].dep_ != "advmod":
                bare_wh = j
            break
    if not (connective or pronouns or bare_wh is not None):
        return Resolved(current, current, False)

    contexts = []
    for text in reversed(earlier[-CONTEXT_TURNS:]):
        if text not in parsed:
            parsed[text] = _context(nlp, text)
        contexts.append(parsed[text])
    head = next((c.head.text for c in contexts if c.head is not None), "")
    answer = previous_answer(nlp, messages) if pronouns else None

    # Bind each pronoun in turn; a place answer goes to "there" before "it" can take it. One
    # referent serves one class; two arguments of one verb ("he told him") are two referents.
    bound: dict[int, Referent] = {}
    class_of: dict[str, str] = {}
    there_first = [i for i, cls in pronouns.items() if cls == "there"][:1]
    for step, i in enumerate([*there_first, *sorted(pronouns)]):
        if i in bound:
            continue
        t, cls = toks[i], pronouns[i]
        possessive = _is_possessive(t)
        taken = {bound[j].text.lower() for j in bound if not possessive
                 and _governor(toks[j]) == _governor(t) and not _is_possessive(toks[j])}
        if not possessive:
            # Nor what another argument of its verb names ("when did he work with Moore").
            taken |= {m.text.lower() for m in doc.noun_chunks
                      if m.root.pos_ != "PRON" and _governor(m.root) == _governor(t)}
        for ref in _candidates(cls, t, answer, [] if step < len(there_first) else contexts):
            if cls in ref.fits and not any(ref.text.lower() in x or x in ref.text.lower()
                                           for x in taken) \
                    and class_of.setdefault(ref.text, cls) == cls:
                bound[i] = ref
                break

    # Rewrite the follow-up token by token for the reader.
    out: list[str] = []
    carried: list[str] = []
    start = 1 if connective else 0
    for t in toks[start:]:
        word = t.text
        if t.i == bare_wh and head:
            out.append(head + " ")
            carried.append(head)
        ref = bound.get(t.i)
        if ref is not None:
            if _is_possessive(t):
                word = _possessive(ref.phrase)
            elif pronouns[t.i] == "there" and t.dep_ == "advmod":
                word = "in " + ref.phrase
            else:
                word = ref.phrase
            carried.append(ref.text)
        out.append(word + t.whitespace_)
    if bare_wh == len(toks) and head:
        out.append(" " + head)
        carried.append(head)
    question = "".join(out).strip()
    if question and question[0].islower():
        question = question[0].upper() + question[1:]

    # Retrieval also gets the earlier question's entities and noun phrases.
    extra = [p for c in contexts[:1] for p in c.phrases
             if p.lower() not in question.lower()]
    query = " ".join([question, *extra]) if extra else question
    return _bounded(Resolved(question or current, query, True,
                             tuple(dict.fromkeys(carried + extra))), current)


def _bounded(resolved: Resolved, current: str) -> Resolved:
    """`resolved` within the question limit: what the client sent fits it (check_messages),
    so a rewrite made longer by earlier turns must not turn it into a 422."""
    question = resolved.question if len(resolved.question) <= MAX_QUESTION_CHARS else current
    # The phrases carried into the query only add recall: drop them rather than refuse.
    query = resolved.query if len(resolved.query) <= MAX_QUESTION_CHARS else question
    return Resolved(question, query, resolved.follow_up, resolved.carried)

