"""Synthetic reading-comprehension examples from unlabeled articles.

For each sentence of each article, a few answers are chosen (`answer_candidates`) and a
question is made for each (`make_question`). The passage is a window of sentences
around the answer's sentence, so that reading practice looks like the windows the
reader sees at query time. Following Fabbri et al. (2020), a named answer's question is
made, where possible, from *another* sentence that states the same answer and shares
another entity with the passage, so that the question does not copy the passage's
wording; every name and number such a question carries must still appear in the passage.
Beside the wh-questions the set holds:

* keyword queries ("rosneft yugansk unit bought price"), as analysts type them;
* lower-cased and misspelt questions;
* unanswerable pairs: a question with a passage of the same article that lacks its
  answer, and near misses, a question whose year, number or name was changed to one
  the passage does not state.

Everything is drawn from one seeded generator, so a corpus and a seed give the same
file byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from indexing.sentences import load_nlp, to_spacy_doc
from training.corpus import ParsedArticle
from training.questions import Span, answer_candidates, make_question

MAX_CONTEXT_CHARS = 700  # about 150 wordpieces: a little over a read window at query time
QUESTIONS_PER_SENTENCE = 2
RETRIEVED_SHARE = 0.6  # named answers asked from another sentence, where one exists
KEYWORD_SHARE = 0.1
LOWER_SHARE = 0.1
TYPO_SHARE = 0.08
UNANSWERABLE_SHARE = 0.35  # of all examples
EDITED_SHARE = 0.7  # of the unanswerable ones, where an edit can be made
# Kinds a question may be asked about from another sentence: names and exact values.
_RETRIEVABLE = frozenset({"person", "organisation", "place", "group", "date", "money",
                          "percent"})
_TYPE_HINTS = {"person": ("who",), "date": ("when", "date", "year"),
               "time": ("when", "time"), "place": ("where",), "count": ("how many", "number"),
               "money": ("how much", "cost"), "percent": ("percentage", "how much"),
               "quantity": ("how much",), "reason": ("why", "reason")}
_PRIORITY = {"thing": 0.2, "clause": 0.4}
_WH_WORDS = frozenset("what which who whom whose when where why how".split())
_YEAR_RE = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_NUMBER_RE = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")


@dataclass(frozen=True, slots=True)
class Example:
    """A question over a passage; `answer_start` is -1 (and `answer` empty) when the
    passage does not answer it."""

    id: str
    question: str
    context: str
    answer: str
    answer_start: int
    kind: str  # how it was made: "sentence", "retrieved", "keyword", "edited", "other-passage"
    answer_type: str
    doc_id: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Example:
        return cls(**json.loads(line))


@dataclass(slots=True)
class _Article:
    doc_id: str
    text: str
    starts: list[int]
    ends: list[int]
    docs: list


def _key(text: str) -> str:
    return re.sub(r"^(the|a|an)\s+", "", text.lower().strip())


class Generator:
    """Holds a parsed corpus and its entity occurrences; `examples()` makes the data."""

    def __init__(self, articles: Iterable[ParsedArticle], seed: int = 0, nlp=None):
        nlp = nlp or load_nlp()
        vocab = nlp.vocab
        self.stop_words = frozenset(nlp.Defaults.stop_words)
        self.rng = random.Random(seed)
        self.articles: list[_Article] = []
        for parsed in articles:
            docs = [to_spacy_doc(vocab, parsed.text[s.start:s.end], s.annotation)
                    for s in parsed.sentences]
            self.articles.append(_Article(parsed.doc_id, parsed.text,
                                          [s.start for s in parsed.sentences],
                                          [s.end for s in parsed.sentences], docs))
        # Where each named answer occurs, and each sentence's entity keys.
        self.occurrences: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
        self.names: dict[str, list[str]] = defaultdict(list)
        self.entity_keys: dict[tuple[int, int], frozenset[str]] = {}
        for a, art in enumerate(self.articles):
            for i, doc in enumerate(art.docs):
                keys = set()
                for ent in doc.ents:
                    key = _key(ent.text)
                    keys.add(key)
                    self.occurrences[key].append((a, i, ent.start, ent.end))
                    if ent.label_ in ("PERSON", "ORG", "GPE"):
                        self.names[ent.label_].append(ent.text)
                self.entity_keys[(a, i)] = frozenset(keys)
        for label in self.names:
            self.names[label] = sorted(set(self.names[label]))
        counts = Counter(t.lower_ for art in self.articles for doc in art.docs for t in doc
                         if t.pos_ == "NOUN" and t.is_alpha and len(t.text) >= 4)
        self.noun_list = sorted(n for n, c in counts.items() if c >= 3)
        self.nouns = frozenset(self.noun_list)

    # -- passages --------------------------------------------------------------
    def _window(self, a: int, i: int) -> tuple[int, int] | None:
        """Sentences [first, last] around sentence i that fit the passage budget."""
        art = self.articles[a]
        first = max(0, i - self.rng.randint(0, 3))
        last = min(len(art.docs) - 1, i + self.rng.randint(0, 3))
        while art.ends[last] - art.starts[first] > MAX_CONTEXT_CHARS:
            if last > i and (first == i or self.rng.random() < 0.5):
                last -= 1
            elif first < i:
                first += 1
            else:
                return None
        return first, last

    def _context(self, a: int, window: tuple[int, int]) -> tuple[str, int]:
        art = self.articles[a]
        start = art.starts[window[0]]
        return art.text[start:art.ends[window[1]]], start

    # -- answerable questions --------------------------------------------------
    def _retrieved(self, a: int, i: int, span: Span, context: str,
                   window: tuple[int, int]) -> str | None:
        """A question about `span` made from another sentence that states the same answer
        and shares another entity with the passage."""
        doc = self.articles[a].docs[i]
        key = _key(doc[span.first:span.last].text)
        passage_keys = set().union(*(self.entity_keys[(a, j)]
                                     for j in range(window[0], window[1] + 1))) - {key}
        others = [o for o in self.occurrences.get(key, ()) if (o[0], o[1]) != (a, i)
                  and self.entity_keys[(o[0], o[1])] & passage_keys]
        self.rng.shuffle(others)
        lowered = context.lower()
        for a2, i2, first, last in others[:4]:
            other = self.articles[a2].docs[i2]
            question = make_question(other, Span(first, last, span.kind), self.rng)
            if question is None:
                continue
            # Every name and number the question carries must be in the passage: the edits
            # that make near-miss unanswerables differ from these only in that.
            asked = [e.text.lower() for e in other.ents
                     if not (first <= e.start and e.end <= last) and e.text.lower() in question.lower()]
            if all(text in lowered for text in asked):
                return question
        return None

    def _answerable(self, a: int, i: int, span: Span) -> Example | None:
        art = self.articles[a]
        doc = art.docs[i]
        window = self._window(a, i)
        if window is None:
            return None
        context, offset = self._context(a, window)
        answer = doc[span.first:span.last]
        start = art.starts[i] + answer.start_char - offset
        question, kind = None, "sentence"
        if span.kind in _RETRIEVABLE and self.rng.random() < RETRIEVED_SHARE:
            question, kind = self._retrieved(a, i, span, context, window), "retrieved"
        if question is None:
            question, kind = make_question(doc, span, self.rng), "sentence"
        if question is None or len(self._content(question)) < 2:
            return None  # "What is positive?" asks nothing a passage could be found by
        roll = self.rng.random()
        if roll < KEYWORD_SHARE:
            question, kind = self._keywords(question, span), "keyword"
        elif roll < KEYWORD_SHARE + LOWER_SHARE:
            question = question.lower()
        elif roll < KEYWORD_SHARE + LOWER_SHARE + TYPO_SHARE:
            question = self._typo(question)
        if not question:
            return None
        assert context[start:start + len(answer.text)] == answer.text
        return Example("", question, context, answer.text, start, kind, span.kind, art.doc_id)

    def _content(self, question: str) -> list[str]:
        return [w for w in re.findall(r"[\w£$€%.,'-]+", question.lower().rstrip("?"))
                if w not in self.stop_words and w not in _WH_WORDS and w.strip(".,'-")]

    def _keywords(self, question: str, span: Span) -> str | None:
        """The question's content words, a few of them, with a hint of what is asked."""
        words = [w.strip(".,'") for w in self._content(question)]
        if len(words) < 2:
            return None
        keep = sorted(self.rng.sample(range(len(words)), min(len(words), self.rng.randint(2, 6))))
        query = [words[k] for k in keep]
        hints = _TYPE_HINTS.get(span.kind)
        if hints and self.rng.random() < 0.6:
            hint = self.rng.choice(hints)
            query = [hint, *query] if self.rng.random() < 0.5 else [*query, hint]
        return " ".join(query)

    def _typo(self, question: str) -> str:
        words = question.split()
        long_words = [k for k, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if not long_words:
            return question
        k = self.rng.choice(long_words)
        w = words[k]
        p = self.rng.randint(1, len(w) - 2)
        edit = self.rng.choice(("swap", "drop", "double"))
        if edit == "swap":
            w = w[:p] + w[p + 1] + w[p] + w[p + 2:]
        elif edit == "drop":
            w = w[:p] + w[p + 1:]
        else:
            w = w[:p] + w[p] + w[p:]
        words[k] = w
        return " ".join(words)

    # -- unanswerable questions ------------------------------------------------
    def _edited(self, ex: Example) -> Example | None:
        """A near miss: the question with a year, number or name the passage does not state."""
        q, lowered = ex.question, ex.context.lower()
        options = []
        for m in _YEAR_RE.finditer(q):
            year = int(m.group())
            for delta in self.rng.sample((-3, -2, -1, 1, 2, 3), 6):
                if str(year + delta) not in ex.context:
                    options.append((m.start(), m.end(), str(year + delta)))
                    break
        for m in _NUMBER_RE.finditer(q):
            if _YEAR_RE.fullmatch(m.group()):
                continue
            value = m.group().replace(",", "")
            try:
                number = float(value)
            except ValueError:
                continue
            new = number * self.rng.choice((2, 3, 0.5)) + self.rng.choice((0, 1))
            text = f"{new:,.0f}" if number >= 1000 else f"{new:g}"
            if text not in ex.context:
                options.append((m.start(), m.end(), text))
        # A common noun swapped for another ("Who founded the *bank*?" -> "... the *club*?"),
        # the commonest kind of SQuAD 2.0's unanswerable questions.
        for m in re.finditer(r"[a-z]{4,}", q):
            if m.group() in self.nouns and m.group() in lowered:
                for _ in range(5):
                    other = self.rng.choice(self.noun_list)
                    if other not in lowered:
                        options.append((m.start(), m.end(), other))
                        break
        for names in self.names.values():
            # Sorted: a set's order changes with the process's string hashing.
            for name in sorted({n for n in names if len(n) > 3 and n in q and n.lower() in lowered}):
                for _ in range(5):
                    other = self.rng.choice(names)
                    if other.lower() not in lowered and other != name:
                        k = q.index(name)
                        options.append((k, k + len(name), other))
                        break
        if not options:
            return None
        start, end, new = self.rng.choice(options)
        question = q[:start] + new + q[end:]
        return Example("", question, ex.context, "", -1, "edited", ex.answer_type, ex.doc_id)

    def _other_passage(self, ex: Example, a: int) -> Example | None:
        """The question with another passage of its article that does not hold its answer."""
        art = self.articles[a]
        answer = ex.answer.lower()
        words = {w for w in re.findall(r"[a-z]{4,}", ex.question.lower())}
        candidates = []
        for i in range(len(art.docs)):
            window = (i, min(i + 2, len(art.docs) - 1))
            while window[1] > window[0] and \
                    art.ends[window[1]] - art.starts[window[0]] > MAX_CONTEXT_CHARS:
                window = (window[0], window[1] - 1)
            context, _ = self._context(a, window)
            if len(context) > MAX_CONTEXT_CHARS or answer in context.lower() or context in ex.context \
                    or ex.context in context:
                continue
            overlap = len(words & set(re.findall(r"[a-z]{4,}", context.lower())))
            candidates.append((overlap, i, context))
        if not candidates:
            return None
        # The passages sharing most of the question's words are the hard ones.
        candidates.sort(key=lambda c: (-c[0], c[1]))
        _, _, context = self.rng.choice(candidates[:3])
        return Example("", ex.question, context, "", -1, "other-passage", ex.answer_type,
                       ex.doc_id)

    # -- all of it -------------------------------------------------------------
    def examples(self, per_sentence: int = QUESTIONS_PER_SENTENCE,
                 unanswerable_share: float = UNANSWERABLE_SHARE) -> list[Example]:
        """Every example, shuffled, with stable ids."""
        out: list[Example] = []
        sources: list[int] = []
        for a, art in enumerate(self.articles):
            for i, doc in enumerate(art.docs):
                spans = answer_candidates(doc)
                # Names, numbers and dates first, then noun phrases and clauses: plain
                # noun phrases are the most common candidates but not the most asked.
                spans.sort(key=lambda s: self.rng.random() * _PRIORITY.get(s.kind, 1.0),
                           reverse=True)
                made = 0
                for span in spans:
                    if made == per_sentence:
                        break
                    ex = self._answerable(a, i, span)
                    if ex is not None:
                        out.append(ex)
                        sources.append(a)
                        made += 1
        wanted = int(len(out) * unanswerable_share / (1 - unanswerable_share))
        negatives: list[Example] = []
        order = list(range(len(out)))
        self.rng.shuffle(order)
        for k in order:
            if len(negatives) >= wanted:
                break
            ex = out[k]
            if ex.kind == "keyword":
                continue
            made = self._edited(ex) if self.rng.random() < EDITED_SHARE else None
            made = made or self._other_passage(ex, sources[k])
            if made is not None:
                negatives.append(made)
        everything = out + negatives
        self.rng.shuffle(everything)
        seen: set[tuple[str, str]] = set()
        unique = []
        for ex in everything:
            if (ex.question, ex.context) in seen:
                continue
            seen.add((ex.question, ex.context))
            digest = hashlib.sha1(f"{ex.doc_id}\n{ex.question}\n{ex.context}".encode())
            unique.append(Example(f"syn-{digest.hexdigest()[:12]}", *(
                getattr(ex, f) for f in ("question", "context", "answer", "answer_start",
                                         "kind", "answer_type", "doc_id"))))
        return unique


def summary(examples: list[Example], sample: int = 12, seed: int = 0) -> str:
    """Counts by kind and answer type, and a few examples to read."""
    kinds = Counter(ex.kind for ex in examples)
    types = Counter(ex.answer_type for ex in examples if ex.answer_start >= 0)
    lines = [f"{len(examples)} examples, {sum(ex.answer_start < 0 for ex in examples)} unanswerable",
             "by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()),
             "answerable by type: " + ", ".join(f"{k} {n}" for k, n in types.most_common()),
             "sample:"]
    for ex in random.Random(seed).sample(examples, min(sample, len(examples))):
        answer = repr(ex.answer) if ex.answer_start >= 0 else "(no answer)"
        lines.append(f"  [{ex.kind}/{ex.answer_type}] {ex.question}  ->  {answer}")
    return "\n".join(lines)
