"""Text -> AST, with syntax errors turned into diagnostics at the parser boundary.

The whole text is lexed once, with the terminals of `grammar/kist.lark`, and the
token stream is cut before every statement keyword. A file that is fine is
parsed in one go by lark's LALR parser; a file with a syntax error is parsed
statement by statement, so the error costs one statement: the statements
around it still become AST nodes, so the checker can judge them, and no
follow-on errors cascade from it. A bad character is reported once, skipped,
and lexing resumes after it.

Nothing here raises for any input text: every problem is an E001 (or, for
bytes that are not UTF-8, an E014) diagnostic with a real span.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken

from kistrules.ast import Comment, Rulebook
from kistrules.builtins import HEDGES, KEYWORDS, MEMBERSHIP_FUNCTIONS, PROPERTIES
from kistrules.checker import did_you_mean
from kistrules.diagnostics import Diagnostic, make
from kistrules.span import LineIndex, Span

# A statement starts at one of these; `IF` too, unless it follows `rule NAME:`.
STATEMENT_KEYWORDS = frozenset({"RULEBOOK", "CLASS", "SCALE", "SET", "THRESHOLD", "DEFINE", "RULE"})
# Deeper conditions are refused (E001): the passes over the AST recurse.
MAX_NESTING = 100
# After this many syntax errors a file is hopeless; stop rather than flood the screen.
MAX_SYNTAX_ERRORS = 50
# Characters that can begin a token of the grammar; a run of anything else is one error.
_TOKEN_START = frozenset(
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.(),:="# \t\f\r\n'
)


def _grammar_text() -> str:
    """The grammar: packaged in a wheel, or beside the package in a checkout."""
    try:
        packaged = resources.files("kistrules").joinpath("grammar/kist.lark")
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError):  # pragma: no cover - exotic loaders
        pass
    return (Path(__file__).resolve().parent.parent / "grammar" / "kist.lark").read_text(
        encoding="utf-8"
    )


@functools.cache
def _lark() -> Lark:
    """The LALR parser, built once per process (building it costs ~50 ms)."""
    return Lark(
        _grammar_text(),
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=True,
    )


@dataclass(frozen=True)
class ParseResult:
    """What `parse_detailed` learns about a text.

    `damaged_sets` names the sets whose `set` statement did not parse: the
    checker treats them as defined, so that one broken `set` line does not
    also make every rule using it an "unknown set". `damaged_conditions`
    does the same for `define` statements.
    """

    rulebook: Rulebook
    diagnostics: tuple[Diagnostic, ...]
    damaged_sets: frozenset[str] = field(default_factory=frozenset)
    damaged_conditions: frozenset[str] = field(default_factory=frozenset)


def parse(text: str, path: str = "<string>") -> tuple[Rulebook | None, list[Diagnostic]]:
    """Parse rulebook text into its AST and the syntax errors found.

    The rulebook holds every statement that parsed, even when others did not,
    so that the checker can still run. (It is never None here; `parse_bytes`
    returns None for bytes that are not UTF-8 text.)

    >>> rulebook, diagnostics = parse("IF gray is low THEN anomalous (0.8)")
    >>> rulebook.rules[0].name, rulebook.rules[0].truth_value, diagnostics
    ('rule 1', 0.8, [])
    """
    result = parse_detailed(text, path)
    return result.rulebook, list(result.diagnostics)


def decode(data: bytes, path: str = "<string>") -> tuple[str | None, Diagnostic | None]:
    """Decode a rulebook file's bytes as UTF-8 (a leading BOM is dropped).

    Returns the text, or None and an E014 diagnostic pointing at the first
    byte that is not UTF-8 (or at the first NUL byte: a binary file).
    """
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8-sig")
        bad = -1
    except UnicodeDecodeError as err:
        text, bad = None, err.start
    if nul < 0 and text is not None:
        return text, None
    # Whichever comes first: a NUL byte (a binary file) or a byte that is not UTF-8.
    binary = nul >= 0 and (bad < 0 or nul < bad)
    offset = nul if binary else bad
    prefix = data[bom:offset].decode("utf-8", errors="replace")
    line, column = LineIndex(prefix, path).position(len(prefix))
    span = Span(
        path=path,
        start=len(prefix),
        end=len(prefix) + 1,
        line=line,
        column=column,
        end_line=line,
        end_column=column + 1,
    )
    if binary:
        message = f"file looks binary: NUL byte at offset {offset}"
        return None, make(
            "E014", message, span, label="binary data", hint="a rulebook is a text file (.rules)"
        )
    message = f"file is not UTF-8 text: byte 0x{data[offset : offset + 1].hex()} at offset {offset}"
    return None, make(
        "E014", message, span, label="not UTF-8", hint="save the rulebook as UTF-8 text"
    )


def parse_bytes(data: bytes, path: str = "<string>") -> tuple[Rulebook | None, list[Diagnostic]]:
    """Parse a file's bytes: E014 (and no rulebook) when they are not UTF-8 text."""
    text, problem = decode(data, path)
    if text is None:
        return None, [problem] if problem else []
    return parse(text, path)


# --- lexing -------------------------------------------------------------------


@dataclass
class StatementTokens:
    """The tokens of one statement (comments and blanks removed), as the parser sees them."""

    tokens: list[Token] = field(default_factory=list)
    has_if: bool = False
    damaged: bool = False  # a bad character was skipped inside it


@dataclass(frozen=True)
class _Scanner:
    """A one-regex tokenizer built from the grammar's own terminals.

    lark's lexer costs ~5 us a token in Python; one `re` alternation over the
    same terminal patterns is several times faster and makes the same tokens
    (a hypothesis test compares the two). Keywords are NAMEs whose spelling is
    a keyword, exactly as lark's "unless" rule decides.
    """

    pattern: re.Pattern[str]
    keywords: dict[str, str]  # lower-case spelling -> terminal name
    keyword_patterns: tuple[tuple[re.Pattern[str], str], ...]  # for non-ASCII spellings


@functools.cache
def _scanner() -> _Scanner:
    terminals = _lark().terminals
    name_regexp = next(t for t in terminals if t.name == "NAME").pattern.to_regexp()
    keywords: dict[str, str] = {}
    keyword_patterns = []
    alternatives = []
    strings = []
    for t in terminals:
        regexp = t.pattern.to_regexp()
        if t.pattern.type == "str" and re.fullmatch(name_regexp, t.pattern.value):
            keywords[t.pattern.value.lower()] = t.name
            keyword_patterns.append((re.compile(regexp), t.name))
        elif t.pattern.type == "str":
            strings.append((t.name, regexp))
        else:
            alternatives.append((t.name, regexp))
    # Patterns first (so `.5` is a NUMBER, not a DOT), then punctuation, longest first.
    strings.sort(key=lambda item: -len(item[1]))
    pattern = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in alternatives + strings))
    return _Scanner(pattern, keywords, tuple(keyword_patterns))


def _lex(
    text: str, lines: _Builder, diagnostics: list[Diagnostic]
) -> tuple[list[StatementTokens], list[Comment]]:
    """Tokens grouped by statement, and the comments; bad characters become E001."""
    scanner = _scanner()
    match = scanner.pattern.match
    keywords = scanner.keywords
    chunks: list[StatementTokens] = []
    comments: list[Comment] = []
    current = StatementTokens()
    pos, n = 0, len(text)
    while pos < n:
        m = match(text, pos)
        if m is None:
            end = pos + 1
            while end < n and text[end] not in _TOKEN_START:
                end += 1
            if not current.damaged:  # one error per statement: no cascade
                diagnostics.append(_bad_characters(text, pos, end, lines))
            current.damaged = True
            pos = end
            if len(diagnostics) >= MAX_SYNTAX_ERRORS:
                break
            continue
        kind = m.lastgroup
        end = m.end()
        if kind == "WS":
            pos = end
            continue
        value = m.group()
        if kind == "COMMENT":
            body = value.rstrip()
            comments.append(Comment(span=lines.span(pos, pos + len(body)), text=body))
            pos = end
            continue
        if kind == "NAME":
            kind = keywords.get(value.lower(), "NAME")
            if kind == "NAME" and not value.isascii():
                kind = next((k for rx, k in scanner.keyword_patterns if rx.fullmatch(value)), kind)
        tok = Token(kind, value, pos, None, None, None, None, end)
        starts = kind in STATEMENT_KEYWORDS or (
            kind == "IF"
            and (current.has_if or not current.tokens or current.tokens[0].type != "RULE")
        )
        if starts and (current.tokens or current.damaged):
            chunks.append(current)
            current = StatementTokens()
        current.tokens.append(tok)
        if kind == "IF":
            current.has_if = True
        pos = end
    if current.tokens or current.damaged:
        chunks.append(current)
    return chunks, comments


def _bad_characters(text: str, start: int, end: int, lines: _Builder) -> Diagnostic:
    span = lines.span(start, end)
    char = text[start]
    if char == '"':
        return make(
            "E001",
            "unterminated string: a quote is not closed on its line",
            span,
            label="this quote is never closed",
            hint='write the name on one line: rulebook "magnetic tile"',
        )
    # Control characters are shown escaped (\x01), so that the message stays one clean line.
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text[start : min(end, start + 30)]
    )
    hint = None
    if char in "<>!":
        hint = 'rules compare with sets, not numbers: write "gray is low", not "gray < 50"'
    elif char in "+-":
        hint = "a sign must be followed by a number"
    elif char.isalpha():
        hint = "names use the letters a-z, digits and _"
    elif char == ";":
        hint = "statements need no separator; start the next one on a new line"
    return make(
        "E001",
        f"unexpected character {_quote(shown)}",
        span,
        label="not part of the language",
        hint=hint,
    )


# --- parsing ------------------------------------------------------------------


def parse_detailed(text: str, path: str = "<string>") -> ParseResult:
    """Like `parse`, also telling which set definitions were lost to syntax errors."""
    with gc_paused():
        return _parse_detailed(text, path)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the AST is built.

    Building a large rulebook allocates ~100 container objects per rule and
    none of them form cycles, yet each allocation burst triggers full
    collections that rescan everything built so far: with the collector on,
    a 10,000-rule file parses 3-5x slower. Reference counting still frees
    everything; the collector's previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_detailed(text: str, path: str) -> ParseResult:
    builder = lines = _Builder(text, path)
    diagnostics: list[Diagnostic] = []
    chunks, comments = _lex(text, lines, diagnostics)
    lark = _lark()
    statements: list[dict] = []
    damaged_sets: set[str] = set()
    damaged_conditions: set[str] = set()
    tree = None if diagnostics else _parse_all(lark, chunks)
    if tree is not None:
        # The common case: the whole file parses in one go.
        rule_count = 0
        for child in tree.children:
            if child.data == "rule":
                rule_count += 1
            _build(builder, child, rule_count, statements, diagnostics)
    else:
        # Statement by statement: each syntax error costs its own statement only.
        rule_count = 0
        for i, chunk in enumerate(chunks):
            tokens = chunk.tokens
            if tokens and tokens[0].type in ("RULE", "IF"):
                rule_count += 1
            tree = None
            if not chunk.damaged and len(diagnostics) < MAX_SYNTAX_ERRORS:
                nxt = chunks[i + 1].tokens if i + 1 < len(chunks) else []
                following = nxt[0] if nxt else None
                tree = _parse_statement(lark, tokens, following, text, lines, diagnostics)
            if tree is None:
                if tokens and tokens[0].type == "SET":
                    damaged_sets.update(t.value.lower() for t in tokens if t.type == "NAME")
                if len(tokens) > 1 and tokens[0].type == "DEFINE" and tokens[1].type == "NAME":
                    damaged_conditions.add(tokens[1].value.lower())
                continue
            for child in tree.children:
                _build(builder, child, rule_count, statements, diagnostics)
    rulebook = Rulebook.model_validate(
        {
            "span": builder.span_data(0, len(text)),
            "path": path,
            "statements": statements,
            "comments": comments,
            "source": text,
        }
    )
    return ParseResult(
        rulebook, tuple(diagnostics), frozenset(damaged_sets), frozenset(damaged_conditions)
    )


def _build(
    builder: _Builder,
    tree: Tree,
    rule_position: int,
    statements: list[dict],
    diagnostics: list[Diagnostic],
) -> None:
    """Append one statement's data, or an E001 if its condition nests too deeply."""
    try:
        statements.append(builder.statement(tree, rule_position))
    except _TooDeep as err:
        span = builder.span(err.start, err.end)
        diagnostics.append(
            make(
                "E001",
                f"condition nested more than {MAX_NESTING} levels deep",
                span,
                label="too deep",
                hint="split the rule into several rules",
            )
        )


def _parse_all(lark: Lark, chunks: list[StatementTokens]) -> Tree | None:
    """The whole file's tree, or None if any statement has a syntax error."""
    parser = lark.parse_interactive()
    feed = parser.parser_state.feed_token  # skips a wrapper call per token
    last = None
    try:
        for chunk in chunks:
            for tok in chunk.tokens:
                feed(tok)
                last = tok
        return parser.feed_eof(last)
    except UnexpectedInput:
        return None


def _parse_statement(
    lark: Lark,
    tokens: list[Token],
    following: Token | None,
    text: str,
    lines: _Builder,
    diagnostics: list[Diagnostic],
) -> Tree | None:
    """One statement's tree, or None after adding its (single) syntax error."""
    parser = lark.parse_interactive()
    index = 0
    at_end = None
    try:
        for index, tok in enumerate(tokens):  # noqa: B007 - index names the failing token
            parser.feed_token(tok)
        index = len(tokens)
        at_end = parser.copy()
        return parser.feed_eof(tokens[-1] if tokens else None)
    except UnexpectedToken as err:
        # At the end, LALR may reduce on "$END" (a `define` may end after a term, and
        # its states are shared with rules') before it fails: ask what the last token's
        # state accepted instead.
        expected = set(at_end.accepts()) if at_end is not None else set(err.expected)
        diagnostics.append(
            _SyntaxError(tokens, index, expected, following, text, lines).diagnostic()
        )
    except UnexpectedInput as err:  # pragma: no cover - the lexer's errors are handled earlier
        span = lines.span(tokens[0].start_pos, tokens[-1].end_pos)
        diagnostics.append(make("E001", f"cannot parse this statement: {err}", span))
    return None


# --- syntax error messages ----------------------------------------------------

_WORDS = {
    "IF": "IF",
    "THEN": "THEN",
    "AND": "AND",
    "OR": "OR",
    "NOT": "NOT",
    "IS": "IS",
    "ANOMALOUS": '"anomalous"',
    "RULEBOOK": '"rulebook"',
    "CLASS": '"class"',
    "SCALE": '"scale"',
    "SET": '"set"',
    "THRESHOLD": '"threshold"',
    "RULE": '"rule"',
    "DEFINE": '"define"',
    "RAW": '"raw"',
    "LPAR": '"("',
    "RPAR": '")"',
    "COMMA": '","',
    "EQUAL": '"="',
    "DOT": '"."',
    "COLON": '":"',
    "NUMBER": "a number",
    "STRING": 'a quoted name (like "magnetic tile")',
}
_ORDER = [
    "THEN",
    "ANOMALOUS",
    "IS",
    "NAME",
    "NUMBER",
    "STRING",
    "RPAR",
    "AND",
    "OR",
    "NOT",
    "LPAR",
    "COMMA",
    "EQUAL",
    "DOT",
    "COLON",
]
_STATEMENT_WORDS = "a statement (rulebook, class, scale, set, threshold, define, rule or IF)"
_EXAMPLES = {
    "SCALE": "scale gray = 255",
    "SET": "set low = trapezoid(0, 0, 0.2, 0.4)",
    "THRESHOLD": "threshold 0.8",
    "RULEBOOK": 'rulebook "magnetic tile"',
    "CLASS": "class blowhole, crack",
    "RULE": "rule dark: IF gray is low THEN anomalous (0.9)",
    "DEFINE": "define dark_spot = darkness is high AND pixels is not low",
    "IF": "IF gray is low THEN anomalous (0.9)",
}


_ROLE_WORDS = {
    "set": "a set name",
    "new_set": "a set name",
    "property": "a property name",
    "rule": "a rule name",
    "class": "a class name",
    "new_class": "a class name",
    "new_condition": "a name for the condition",
}


# What a name stands for, by the terminal just before it.
NAME_ROLE_AFTER: dict[str, str] = {
    "IS": "set",
    "NAME": "set",  # after a hedge
    "DOT": "set",  # `set PROPERTY.NAME`
    "IF": "property",
    "AND": "property",
    "OR": "property",
    "NOT": "property",
    "LPAR": "property",
    "SCALE": "property",
    "SET": "new_set",
    "RULE": "rule",
    "DEFINE": "new_condition",
    "EQUAL": "function",
    "THEN": "class",  # `THEN crack`
    "CLASS": "new_class",
    "COMMA": "new_class",  # `class blowhole, crack` (membership arguments are numbers)
    "RAW": "function",
}


def name_role(tokens: Sequence[Token], index: int) -> str | None:
    """What a name at `tokens[index]` of a statement stands for, judged by the tokens before it.

    One of "property" (where a condition starts: a property, or a defined
    condition's name), "set" (a set, or a hedge before it: `is [not] [HEDGE ...] SET`),
    "new_set" (after `set`: a new set's name, or the property of an override),
    "rule" (a new rule's name), "new_condition" (after `define`), "function" (a
    membership function), "class" (the class a rule concludes), "new_class" (a
    name declared by `class`), or None.
    Syntax errors name what was expected with it, and the language server
    picks what to complete.
    """
    prev = tokens[index - 1].type if index > 0 else None
    if prev == "NOT" and index > 1 and tokens[index - 2].type == "IS":
        return "set"  # `is not SET`, where a bare `NOT` starts a condition
    if prev == "EQUAL" and tokens[0].type == "DEFINE":
        return "property"  # `define NAME = CONDITION`
    return NAME_ROLE_AFTER.get(prev) if prev is not None else None


def lex_statements(
    text: str,
) -> tuple[list[StatementTokens], list[Comment], list[Diagnostic]]:
    """The tokens of each statement, as the parser cuts them, the comments, and the
    lexer's errors (E001: an unterminated string, a character no token starts with,
    skipped; its statement is marked `damaged`). Never raises."""
    problems: list[Diagnostic] = []
    chunks, comments = _lex(text, _Builder(text, "<string>"), problems)
    return chunks, comments, problems


def expected_terminals(tokens: Sequence[Token]) -> frozenset[str] | None:
    """The grammar's terminals that may follow the start of a statement (`tokens`).

    Terminal names as in `grammar/kist.lark` (`IF`, `NAME`, `NUMBER`, `RPAR`, ...;
    `$END` where the statement may end). None when `tokens` is not the start of
    any statement (a syntax error before the end).
    """
    parser = _lark().parse_interactive()
    try:
        for tok in tokens:
            parser.feed_token(tok)
    except UnexpectedInput:
        return None
    return frozenset(parser.accepts())


def keyword_spellings() -> dict[str, str]:
    """Terminal name -> the keyword's spelling in lower case (`THEN` -> `then`)."""
    return {terminal: spelling for spelling, terminal in _scanner().keywords.items()}


def _quote(value: str) -> str:
    """A token as messages show it: quoted, on one line, at most ~30 characters."""
    value = value.replace("\n", " ")
    return '"' + (value if len(value) <= 30 else value[:27] + "...") + '"'


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


@dataclass
class _SyntaxError:
    """Turns lark's `UnexpectedToken` into words: what was expected, what was found, a hint."""

    tokens: list[Token]
    index: int  # the failing token; == len(tokens) when the statement ended too early
    expected: set[str]
    following: Token | None  # first token of the next statement, None at end of file
    text: str
    lines: _Builder

    @property
    def found(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    @property
    def previous(self) -> Token | None:
        return self.tokens[self.index - 1] if self.index > 0 else None

    def diagnostic(self) -> Diagnostic:
        if self._unclosed_paren() is None:
            # LALR's default reductions may list ")" where no "(" is open.
            self.expected = self.expected - {"RPAR"}
        self._narrow_to_the_statement()
        expected_words = self._expected_words()
        span, found_words = self._where()
        typo = self._keyword_typo()
        hint = replacement = None
        if typo is not None:
            tok, replacement = typo
            span = self.lines.span(tok.start_pos, tok.end_pos)
            found_words = _quote(tok.value)
            hint = f'did you mean "{replacement}"?'
        hint = hint or self._hint()
        message = f"expected {expected_words}, found {found_words}"
        label = (
            "unexpected here"
            if self.found is not None or typo
            else f"expected {expected_words} here"
        )
        return make("E001", message, span, label=label, hint=hint, replacement=replacement)

    def _narrow_to_the_statement(self) -> None:
        """Drop what LALR's shared states allow only in another kind of statement.

        Rules and `define`s share the condition's states, so a rule's condition
        seems able to end (as a define's does) and a define's to meet THEN. And a
        property name is never a defined condition (E022): after one, only IS fits.
        """
        first = self.tokens[0].type if self.tokens else None
        before = self.tokens[: self.index]
        if first in ("IF", "RULE") and not any(t.type == "THEN" for t in before):
            self.expected = self.expected - STATEMENT_KEYWORDS - {"$END"}
        elif first == "DEFINE":
            self.expected = self.expected - {"THEN"}
        prev = self.previous
        named = prev is not None and prev.type == "NAME"
        if "IS" in self.expected and named and prev.value.lower() in PROPERTIES:
            self.expected = {"IS"}

    def _where(self) -> tuple[Span, str]:
        found = self.found
        if found is not None:
            if found.type == "$END":  # pragma: no cover - we feed $END ourselves
                found = None
            else:
                return self.lines.span(found.start_pos, found.end_pos), self._describe(found)
        end = self.tokens[-1].end_pos if self.tokens else len(self.text)
        span = self.lines.span(end, end)
        if self.following is None:
            return span, "end of file"
        return span, self._describe(self.following)

    @staticmethod
    def _describe(tok: Token) -> str:
        return _quote(tok.value)

    def _expected_words(self) -> str:
        expected = set(self.expected)
        at_start = self.index == 0
        ends = bool(expected & STATEMENT_KEYWORDS) or "$END" in expected
        if at_start and ends:
            return _STATEMENT_WORDS
        expected -= STATEMENT_KEYWORDS | {"$END", "IF"}
        prev = self.previous
        if (
            "NAME" in expected
            and prev is not None
            and prev.type == "NAME"
            and (expected & {"THEN", "AND", "OR", "RPAR"})
        ):
            expected.discard("NAME")  # more hedge words are rarely what the expert meant
        words = [
            self._name_word() if t == "NAME" else _WORDS.get(t, t) for t in _ORDER if t in expected
        ]
        words += sorted(_WORDS.get(t, t) for t in expected if t not in _ORDER)
        if ends:
            words.append("the end of the statement")
        return _join(words) or "something else"

    def _name_word(self) -> str:
        role = name_role(self.tokens, self.index)
        if role == "function":
            return "a membership function (" + _join(list(MEMBERSHIP_FUNCTIONS)) + ")"
        return _ROLE_WORDS.get(role, "a name")

    def _keyword_typo(self) -> tuple[Token, str] | None:
        """A word that is one slip away from a keyword that fits here (`THN` for `then`)."""
        wanted = {t.lower() for t in self.expected if t.lower() in KEYWORDS}
        if self.index == 0:
            wanted |= {"rulebook", "class", "scale", "set", "threshold", "define", "rule", "if"}
        found = self.found
        if found is not None and found.type == "NAME":
            guess = did_you_mean(found.value, sorted(wanted))
            if guess is not None:
                return found, guess
        # `IF gray is low THN anomalous`: THN was read as a set name (low as a hedge),
        # so the parser only stumbles at `anomalous`. Look back over the current term.
        if wanted & {"then", "and", "or"}:
            for tok in reversed(self.tokens[: self.index]):
                if tok.type != "NAME":
                    break
                if tok.value.lower() in HEDGES:
                    continue
                guess = did_you_mean(tok.value, ["then", "and", "or"])
                if guess is not None:
                    return tok, guess
        return None

    def _hint(self) -> str | None:
        found, prev, expected = self.found, self.previous, self.expected
        first = self.tokens[0] if self.tokens else None
        if (
            found is not None
            and found.type == "COMMA"
            and first is not None
            and first.type in ("RULE", "IF", "THRESHOLD", "SCALE")
        ):
            return "use a decimal point, not a comma: 0.8"
        unclosed = self._unclosed_paren()
        if "RPAR" in expected and unclosed is not None and (found is None or found.type != "RPAR"):
            line, column = self.lines.position(unclosed.start_pos)
            return f'the "(" at {line}:{column} is never closed'
        if found is not None and found.type == "RPAR" and "RPAR" not in expected:
            return 'this ")" has no matching "("'
        if (
            first is not None
            and first.type == "DEFINE"
            and found is not None
            and (found.type in ("THEN", "ANOMALOUS"))
        ):
            name = self.tokens[1].value if len(self.tokens) > 1 else "NAME"
            return f"a define only names a condition; a rule uses it: IF {name} THEN anomalous"
        if "THEN" in expected:
            if found is not None and found.type == "ANOMALOUS":
                return 'missing THEN before "anomalous"'
            return "a rule reads IF condition THEN anomalous"
        if "IS" in expected and prev is not None and prev.type == "NAME":
            return f'a term reads PROPERTY is SET, e.g. "{prev.value} is low"'
        if "EQUAL" in expected and first is not None and first.type in ("SCALE", "SET", "DEFINE"):
            return f'missing "=": write it as {_EXAMPLES[first.type]}'
        if "ANOMALOUS" in expected:
            return 'a rule concludes "THEN anomalous" or "THEN CLASS", a class declared by "class"'
        if first is not None and first.type == "CLASS" and found is not None:
            if found.type == "ANOMALOUS":
                return '"anomalous" is built in (any class): declare the kinds of defect'
            return "for example: class blowhole, crack"
        if (
            prev is not None
            and (prev.type == "ANOMALOUS" or (prev.type == "NAME" and "LPAR" in expected))
            and found is not None
            and found.type == "NUMBER"
        ):
            return f"write the truth value in parentheses: {prev.value} ({found.value})"
        if self.index == 0 and found is not None and found.type == "NAME":
            nxt = self.tokens[1] if len(self.tokens) > 1 else None
            if nxt is not None and nxt.type == "IS":
                return "a rule starts with IF: IF gray is low THEN anomalous"
        if self.index == 0 and found is not None and found.type == "NUMBER":
            return None
        if first is not None and first.type in _EXAMPLES and self.index > 0:
            return f"for example: {_EXAMPLES[first.type]}"
        return None

    def _unclosed_paren(self) -> Token | None:
        stack: list[Token] = []
        for tok in self.tokens[: self.index]:
            if tok.type == "LPAR":
                stack.append(tok)
            elif tok.type == "RPAR" and stack:
                stack.pop()
        return stack[-1] if stack else None


# --- tree -> AST ----------------------------------------------------------------


class _TooDeep(Exception):
    """A condition nests deeper than MAX_NESTING (caught and reported as E001)."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(start, end)
        self.start, self.end = start, end


class _Builder:
    """Turns one statement's lark tree into the AST's plain-data form.

    Plain dicts, validated once for the whole rulebook by pydantic's core,
    cost about a tenth of constructing every node in Python. Never raises on
    a tree the grammar produced.
    """

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def span_data(self, start: int, end: int) -> dict:
        starts = self.line_starts
        line = bisect_right(starts, start)
        end_line = bisect_right(starts, end) if end != start else line
        return {
            "path": self.path,
            "start": start,
            "end": end,
            "line": line,
            "column": start - starts[line - 1] + 1,
            "end_line": end_line,
            "end_column": end - starts[end_line - 1] + 1,
        }

    def span(self, start: int, end: int) -> Span:
        return Span(**self.span_data(start, end))

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of an offset."""
        line = bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def span_of(self, node: Tree | Token) -> dict:
        if isinstance(node, Token):
            return self.span_data(node.start_pos, node.end_pos)
        return self.span_data(node.meta.start_pos, node.meta.end_pos)

    def identifier(self, tok: Token) -> dict:
        return {
            "kind": "identifier",
            "span": self.span_data(tok.start_pos, tok.end_pos),
            "name": tok.value.lower(),
            "text": tok.value,
        }

    def number(self, tok: Token) -> dict:
        return {
            "kind": "number",
            "span": self.span_data(tok.start_pos, tok.end_pos),
            "value": float(tok.value),
            "text": tok.value,
        }

    def statement(self, tree: Tree, rule_position: int) -> dict:
        kind = tree.data
        kids = [c for c in tree.children if c is not None]
        span = self.span_of(tree)
        if kind == "rulebook_name":
            return {"kind": "rulebook", "span": span, "name": kids[1].value[1:-1]}
        if kind == "scale_def":
            return {
                "kind": "scale",
                "span": span,
                "property": self.identifier(kids[1]),
                "value": self.number(kids[2]),
            }
        if kind == "threshold_def":
            return {"kind": "threshold", "span": span, "value": self.number(kids[1])}
        if kind == "class_def":
            return {"kind": "class", "span": span, "names": [self.identifier(t) for t in kids[1:]]}
        if kind == "set_def":
            names = [c for c in kids if isinstance(c, Token) and c.type == "NAME"]
            return {
                "kind": "set",
                "span": span,
                "property": self.identifier(names[0]) if len(names) == 2 else None,
                "name": self.identifier(names[-1]),
                "function": self.membership(kids[-1]),
            }
        if kind == "define_def":
            return {
                "kind": "define",
                "span": span,
                "name": self.identifier(kids[1]),
                "condition": self.condition(kids[2]),
            }
        if kind == "rule":
            return self.rule(span, kids, rule_position)
        raise ValueError(f"unexpected statement {kind!r}")  # pragma: no cover - grammar bug

    def membership(self, tree: Tree) -> dict:
        kids = [c for c in tree.children if c is not None]
        raw = kids[0].type == "RAW"
        kids = kids[1:] if raw else kids
        return {
            "kind": "membership",
            "span": self.span_of(tree),
            "function": self.identifier(kids[0]),
            "args": [self.number(t) for t in kids[1:]],
            "raw": raw,
        }

    def rule(self, span: dict, kids: list, position: int) -> dict:
        label = truth = condition = conclusion = None
        for i, child in enumerate(kids):
            if isinstance(child, Token):
                if child.type == "NAME" and kids[i - 1].type == "RULE":
                    label = self.identifier(child)
                elif child.type == "NAME":  # after THEN: the class concluded
                    conclusion = self.identifier(child)
            elif child.data == "truth":
                truth = self.number(child.children[0])
            else:
                condition = self.condition(child)
        return {
            "kind": "rule",
            "span": span,
            "label": label,
            "condition": condition,
            "conclusion": conclusion,
            "truth": truth,
            "position": position,
        }

    def condition(self, tree: Tree, depth: int = 0) -> dict:
        if depth > MAX_NESTING:
            raise _TooDeep(tree.meta.start_pos, tree.meta.end_pos)
        kind = tree.data
        if kind == "term":
            kids = tree.children
            names = [c for c in kids[3:] if c is not None]
            return {
                "kind": "term",
                "span": self.span_of(tree),
                "property": self.identifier(kids[0]),
                "negated": kids[2] is not None,
                "hedges": [self.identifier(t) for t in names[:-1]],
                "set": self.identifier(names[-1]),
            }
        if kind == "reference":
            return {
                "kind": "reference",
                "span": self.span_of(tree),
                "name": self.identifier(tree.children[0]),
            }
        if kind == "negation":
            return {
                "kind": "not",
                "span": self.span_of(tree),
                "operand": self.condition(tree.children[1], depth + 1),
            }
        operands = [self.condition(c, depth + 1) for c in tree.children if isinstance(c, Tree)]
        if kind == "and_expr":
            return {"kind": "and", "span": self.span_of(tree), "operands": operands}
        if kind == "or_expr":
            return {"kind": "or", "span": self.span_of(tree), "operands": operands}
        raise ValueError(f"unexpected condition {kind!r}")  # pragma: no cover - grammar bug
