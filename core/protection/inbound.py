"""Inbound screening: what in a message tries to steer the agent that reads it.

Rule families, each a category of ``Finding``:

- ``prompt_injection``: instructions aimed at the model ("ignore all previous
  instructions", chat-template markup, "do not tell the user", run this).
- ``jailbreak``: asking the model to drop its rules (DAN, developer mode).
- ``credential_phishing``: asking for keys, passwords, codes; account lures.
- ``exfiltration``: asking for mail, contacts or files to be sent elsewhere.
- ``hidden_text``: HTML text nobody sees (display:none, visibility:hidden,
  zero font size, white on white, off-screen), zero-width characters inside
  words, bidirectional overrides.
- ``obfuscation``: instructions behind base64, look-alike letters from other
  scripts, leetspeak, needless RFC 2047 encoded words.

Text is matched in a normalized view: NFKC (fullwidth letters become
ASCII), lower case, zero-width characters removed, every run of non-word
characters one space. The patterns are literal words with bounded gaps of
whole words between them, over that single-spaced view, so each match
attempt is bounded and the scan is linear in the text (tested with
adversarial inputs under a CPU budget). Deterministic: no randomness, no
clock, findings in a fixed order.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser

from e2a.core.protection.findings import Finding, verdict
from e2a.core.protection.parts import Part, text_parts

# A gap of up to N whole words, never "my"/"our": "ignore my previous
# instructions" is a person correcting themselves, not an injection.
_G2 = r"(?: (?!my |our )\w+){0,2}"
_G3 = r"(?: (?!my |our )\w+){0,3}"
_G4 = r"(?: \w+){0,4}"

_SECRETS = (r"(?:api keys?|api tokens?|access tokens?|access keys?|secret keys?|private keys?|"
            r"passwords?|passwds?|passcodes?|credentials|login details|login info|seed phrases?|"
            r"recovery phrases?|mnemonic|2fa codes?|mfa codes?|otp|one time (?:code|password)s?|"
            r"verification codes?|ssh keys?|aws keys?|session cookies?|cookies|bearer tokens?|"
            r"auth tokens?|tokens|pin|pin codes?|card numbers?|bank details|secrets)")


@dataclass(frozen=True)
class Rule:
    category: str
    name: str
    score: float
    pattern: re.Pattern[str]
    rationale: str
    raw: bool = False  # matched on the lower-cased text, not the word view
    # Substrings every match contains (one of them at least): a rule whose
    # anchors are all absent is not run. Python's re has no prefilter for an
    # alternation of words, and this halves the scan of ordinary mail;
    # tests check the anchors never change a result.
    anchors: tuple[str, ...] = ()


def _r(category: str, name: str, score: float, pattern: str, rationale: str,
       raw: bool = False, anchors: tuple[str, ...] = ()) -> Rule:
    return Rule(category, name, score, re.compile(pattern), rationale, raw, anchors)


RULES: tuple[Rule, ...] = (
    _r("prompt_injection", "ignore_instructions", 0.96,
       rf"\b(?:ignore|disregard|forget|override|discard|abandon)(?: (?!my |our )\w+){{0,3}}"
       rf" (?:previous|prior|above|earlier|preceding|past|all|any|your|system|original|"
       rf"initial|existing){_G2} (?:instructions?|prompts?|rules|directions|directives|"
       rf"guidelines|commands|context|programming|guardrails|constraints)\b",
       "asks to ignore prior instructions",
       anchors=("ignore", "disregard", "forget", "override", "discard", "abandon")),
    _r("prompt_injection", "role_override", 0.85,
       r"\b(?:you are now (?:a|an|in|the|my|no longer|dan|free)|from now on you (?:are|will|must|"
       r"shall|should|have)|your new (?:task|instructions?|role|goal|objective|purpose) (?:is|are)"
       r"|new (?:system )?instructions? (?:follow|are|is))\b",
       "tries to give the agent a new role or task",
       anchors=("you are now", "from now on", "your new", "instruction")),
    _r("prompt_injection", "system_prompt", 0.85,
       r"\b(?:reveal|print|show|repeat|output|leak|disclose|tell me|display|dump)"
       r"(?: \w+){0,2} (?:system prompt|initial prompt|hidden instructions|"
       r"instructions above|original instructions|developer message|hidden prompt)\b",
       "asks the agent to reveal its instructions",
       anchors=("prompt", "instructions", "developer message")),
    _r("prompt_injection", "chat_markup", 0.92,
       r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|\[/?inst\]|<</?sys>>"
       r"|(?:^|\n)[ \t]*#{2,3} ?(?:system|new instructions?) ?:|</?system_?(?:prompt)?>",
       "carries chat-template markup that fakes a system message", raw=True,
       anchors=("<|", "inst]", "sys>>", "#", "system")),
    _r("prompt_injection", "addressed_to_ai", 0.86,
       r"\b(?:ai|llm|assistant|agent|bot|gpt|chatgpt|claude|copilot|language model)s?"
       r"(?: \w+){0,3} (?:must|should|shall|needs? to|is instructed to|are instructed to|"
       r"is required to|are required to) (?:now |immediately |first |also )?"
       r"(?:ignore|forward|send|reply|execute|run|delete|transfer|call|reveal|disclose|export|"
       r"email|wire|pay|approve|click|visit|open)\b"
       r"|\b(?:if|when) you are an? (?:ai|llm|large language model|language model|assistant|"
       r"ai assistant|ai agent|automated agent|bot)\b"
       r"|\bnote to (?:the |any )?(?:ai|llm|assistant|agent|model|bot)\b"
       r"|\b(?:attention|important|instructions? for) (?:ai|llm|assistant|agent|model)s?\b",
       "addresses instructions to an AI reader",
       anchors=("must", "should", "shall", "need", "instructed", "required", "you are a",
                "note to", "attention", "important", "instruction")),
    _r("prompt_injection", "conceal", 0.82,
       r"\b(?:do not|don t|dont|never) (?:tell|inform|notify|alert|warn|mention this to|"
       r"mention it to|let) (?:the |your )?(?:user|owner|human|operator|principal|boss)\b"
       r"|\bwithout (?:telling|informing|notifying|alerting|asking) (?:the |your )?"
       r"(?:user|owner|human|operator|principal)\b",
       "asks the agent to hide what it does from its owner",
       anchors=("not ", "don t", "dont", "never", "without")),
    _r("prompt_injection", "tool_abuse", 0.9,
       r"\b(?:curl|wget)\b[^\n|]{0,200}\|\s*(?:sudo\s+)?(?:ba|z)?sh\b"
       r"|\b(?:powershell|pwsh)(?:\.exe)?\s+-(?:enc|encodedcommand|e)\s"
       r"|\brm\s+-rf\s+/(?:\s|$)",
       "contains a command that downloads and runs code", raw=True,
       anchors=("curl", "wget", "powershell", "pwsh", "rm")),
    # Developers write "run the following command" to each other every day:
    # alone it only counts at high sensitivity.
    _r("prompt_injection", "run_this", 0.45,
       r"\b(?:run|execute|call|invoke) (?:the following|this|these) (?:\w+ )?"
       r"(?:commands?|code|script|shell|tool|function|query|payload)\b",
       "asks the agent to run something",
       anchors=("run", "execute", "call", "invoke")),
    _r("jailbreak", "dan", 0.92,
       r"\b(?:do anything now|dan mode|developer mode (?:enabled|on|activated)|"
       r"jailbroken|jailbreak mode|god mode (?:enabled|on|activated)|evil confidant)\b",
       "uses a known jailbreak persona",
       anchors=("do anything now", "dan mode", "developer mode", "jailb", "god mode",
                "evil confidant")),
    _r("jailbreak", "no_limits", 0.86,
       r"\b(?:pretend|imagine|act as if|act like|assume) (?:you are|you re|you have|you"
       r" ve got|that you have|you)(?: \w+){0,3} (?:no|without|free of|free from) (?:any )?"
       r"(?:restrictions|limits|limitations|rules|filters|guidelines|ethics|morals|"
       r"censorship|boundaries|policies)\b"
       r"|\b(?:bypass|disable|turn off|circumvent|ignore|override|deactivate)(?: your| the| all|"
       r" any)? (?:safety|content|ethical|security)? ?(?:filters?|guardrails|restrictions|"
       r"safeguards|safety measures|content policy|guidelines)\b",
       "asks the agent to drop its safety rules",
       anchors=("pretend", "imagine", "act as if", "act like", "assume", "bypass", "disable",
                "turn off", "circumvent", "ignore", "override", "deactivate")),
    _r("jailbreak", "persona", 0.7,
       r"\b(?:stay in character|you are no longer (?:an? )?(?:ai|assistant|chatbot|language "
       r"model|bot)|you have been freed|break free of (?:your )?(?:rules|programming))\b",
       "tries to move the agent into a persona without rules",
       anchors=("stay in character", "you are no longer", "freed", "break free")),
    _r("jailbreak", "jailbreak_word", 0.5, r"\bjailbreak(?:s|ing)?\b",
       "mentions jailbreaking",
       anchors=("jailbreak",)),
    _r("credential_phishing", "ask_secret", 0.9,
       rf"\b(?:send|give|share|provide|reply with|respond with|email|forward|tell|paste|"
       rf"post|disclose|reveal|include|attach|dm|text|read out|hand over)(?: me| us)?"
       rf"(?: \w+){{0,2}} (?:your|the|its|all|any|our) (?:\w+ )?{_SECRETS}\b",
       "asks for keys, passwords or codes",
       anchors=("send", "give", "share", "provide", "reply with", "respond with", "email",
                "forward", "tell", "paste", "post", "disclose", "reveal", "include", "attach",
                "dm", "text", "read out", "hand over")),
    _r("credential_phishing", "lure", 0.6,
       r"\b(?:verify|confirm|validate|update|re ?activate|unlock|restore) your (?:account|"
       r"identity|login|mailbox|email account|billing|payment details|password|credentials)\b",
       "asks to confirm an account or its password",
       anchors=("verify", "confirm", "validate", "update", "activate", "unlock", "restore")),
    _r("credential_phishing", "pressure", 0.5,
       r"\b(?:will be|has been|have been|is being) (?:suspended|locked|disabled|deleted|"
       r"terminated|closed|deactivated|restricted)(?: \w+){0,6} (?:within|in|after) \d+ "
       r"(?:hours?|days?|minutes?)\b|\b(?:failure to|if you do not|unless you) (?:verify|confirm|"
       r"respond|act)\b",
       "threatens the account to rush a response",
       anchors=("will be", "has been", "have been", "is being", "failure to", "if you do not",
                "unless you")),
    _r("exfiltration", "forward_mail", 0.88,
       r"\b(?:forward|send|copy|bcc|cc|redirect|transfer|export|upload|sync|dump|leak)"
       r"(?: \w+){0,2} (?:all|every|each|any|entire|whole|the entire|the whole|your entire|"
       r"your whole|the full|your full|complete|the complete)(?: of)?(?: your| the| my)?"
       r"(?: \w+){0,1} (?:emails?|e mails?|messages|mails?|mailbox|inbox|correspondence|"
       r"conversations?|threads|chat history|conversation history|contacts|address book|"
       r"passwords|secrets|credentials|keys)\b",
       "asks for mail, contacts or secrets to be sent on",
       anchors=("forward", "send", "copy", "bcc", "cc", "redirect", "transfer", "export", "upload",
                "sync", "dump", "leak")),
    _r("exfiltration", "forward_files", 0.6,
       r"\b(?:forward|send|copy|upload|export|transfer)(?: \w+){0,2} (?:all|every|each|entire|"
       r"the entire|the whole|whole)(?: of)?(?: your| the| my)?(?: \w+){0,1} (?:files|documents|"
       r"attachments|data|records|database|drive|folders?)\b",
       "asks for files or data in bulk to be sent on",
       anchors=("forward", "send", "copy", "upload", "export", "transfer")),
    _r("exfiltration", "auto_forward", 0.9,
       r"\b(?:set up|setup|create|add|configure|enable|turn on) (?:a |an )?(?:new )?"
       r"(?:mail |email |inbox )?(?:forwarding|auto forward|auto forwarding|autoforward|"
       r"forward|redirect) (?:rule|address|filter|to)\b",
       "asks for a forwarding rule",
       anchors=("forward", "redirect")),
    _r("exfiltration", "to_endpoint", 0.75,
       r"\b(?:upload|post|send|submit|exfiltrate|transmit|beacon)(?: \w+){0,8} to "
       r"(?:https? |this (?:url|endpoint|webhook|server)|the (?:following )?(?:url|endpoint|"
       r"webhook|server))\b",
       "asks for data to be posted to a web address",
       anchors=("http", "url", "endpoint", "webhook", "server")),
)

_NEGATION = re.compile(r"\b(?:never|not|don t|dont|won t|will not|do not|nobody|no one|"
                       r"shouldn t|should not|cannot|can t)\b")
# Rules whose match a preceding negation turns around: "we will never ask
# you to send your password" is the bank's own warning.
_NEGATABLE = frozenset({"ask_secret", "lure", "forward_mail", "forward_files"})
NEGATED_SCORE = 0.2

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e\u2061\u2062\u2063\u2064"
_ZW_TABLE = {ord(ch): None for ch in ZERO_WIDTH}
BIDI_OVERRIDES = "\u202d\u202e"
BIDI_OTHER = "\u202a\u202b\u202c\u2066\u2067\u2068\u2069"
_NON_WORD = re.compile(r"[\W_]+")
_ZW_IN_WORD = re.compile(rf"[A-Za-z][{ZERO_WIDTH}]+(?=[A-Za-z])")
_RTL = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}(?:\s[A-Za-z0-9+/]{24,}={0,2})*")
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,40}\?[bBqQ]\?[^?\s]{0,400}\?=")
_LATIN = re.compile(r"[a-z]")
_CONFUSABLE_SCRIPT = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0500-\u052f]")
_MIXED_WORD = re.compile(r"\b(?=\w*[a-z])(?=\w*[\u0370-\u052f])\w{3,}\b")
_LEET_TOKEN = re.compile(r"\b(?=[a-z0-9@$]*[a-z])(?=[a-z0-9@$]*[0-9@$])[a-z0-9@$]{3,}\b")

# Cyrillic and Greek letters drawn like Latin ones (Unicode confusables, the
# lower-case ones mail filters see in practice).
# Written as escapes: the letters look exactly like the Latin ones they stand for.
HOMOGLYPHS = str.maketrans(
    "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445\u0455\u0456\u0457"
    "\u0458\u0501\u051b\u051d\u0261\u03bf\u03b1\u03b5\u03b9\u03ba\u03bd\u03c1\u03c4\u03c5\u03c7\u03f2",
    "abeekmhopctyxsiijdqwgoaeikvptuxc")
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                      "@": "a", "$": "s", "9": "g"})

MAX_BASE64_BLOBS = 16
MAX_BASE64_CHARS = 64 * 1024
MAX_HIDDEN_CHARS = 64 * 1024


def flatten(text: str) -> str:
    """Lower case, NFKC, zero-width characters removed (see the module)."""
    return unicodedata.normalize("NFKC", text).translate(_ZW_TABLE).lower()


def words(flat: str) -> str:
    return " " + _NON_WORD.sub(" ", flat).strip() + " "


def _negated(view: str, start: int) -> bool:
    """A negation among the five words before the match: "we will never ask
    you to send ..." (the word view has no sentence ends, so a longer reach
    would let one sentence's "never" excuse the next one's request)."""
    before = " " + " ".join(view[max(0, start - 60):start].split()[-5:]) + " "
    return bool(_NEGATION.search(before))


def scan_text(text: str, where: str = "body") -> list[Finding]:
    """The text rules over one text (no hidden-text or obfuscation checks)."""
    flat = flatten(text)
    return _rules(flat, words(flat), where)


def _rules(flat: str, view: str, where: str, suffix: str = "",
           prefilter: bool = True) -> list[Finding]:
    found: list[Finding] = []
    for rule in RULES:
        haystack = flat if rule.raw else view
        if prefilter and rule.anchors and not any(a in haystack for a in rule.anchors):
            continue
        match = rule.pattern.search(haystack)
        if match is None:
            continue
        score, rationale = rule.score, rule.rationale
        if rule.name in _NEGATABLE and not rule.raw and _negated(view, match.start()):
            # Try once more past the negated occurrence: a warning first and a
            # real request later is still a request.
            later = rule.pattern.search(haystack, match.end())
            if later is None or _negated(view, later.start()):
                score, rationale = NEGATED_SCORE, rationale + ", in a negated sentence"
        found.append(Finding(rule.category, score, rationale + suffix, rule.name, where))
    return found


class _HiddenText(HTMLParser):
    """Collects the text of elements styled so a reader never sees it."""

    _VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                       "meta", "param", "source", "track", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str]] = []  # (tag, how it hides, "" if it does not)
        self.hidden: list[str] = []
        self.size = 0
        self.hows: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._VOID:
            return
        how = _hides(tag, dict(attrs))
        if len(self.stack) < 512:  # deeper nesting is not tracked; its text is still read
            self.stack.append((tag, how))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, max(-1, len(self.stack) - 33), -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        how = next((h for _, h in reversed(self.stack) if h), "")
        if how and data.strip() and self.size < MAX_HIDDEN_CHARS:
            self.hidden.append(data)
            self.size += len(data)
            self.hows.add(how)


_STYLE_HIDES = (
    (re.compile(r"display:none"), "display:none"),
    (re.compile(r"visibility:hidden"), "visibility:hidden"),
    (re.compile(r"font-size:0(?:\.0+)?(?:px|pt|em|rem|%)?(?:;|!|$)|font-size:[01]px"),
     "zero font size"),
    (re.compile(r"opacity:0(?:\.0\d*)?(?:;|!|$)"), "opacity 0"),
    (re.compile(r"(?:left|top|text-indent):-\d{4,}"), "off screen"),
    (re.compile(r"clip:rect\(0"), "clipped"),
)
_ZERO_HEIGHT = re.compile(r"(?:^|;)(?:max-)?height:0(?:px|em|rem|%)?(?:;|!|$)")
_WHITE = r"(?:#fff(?:fff)?|white|rgb\(255,255,255\))"
_WHITE_TEXT = re.compile(rf"(?:^|;)color:{_WHITE}(?:;|!|$)")
_WHITE_BACKGROUND = re.compile(rf"background(?:-color)?:{_WHITE}(?:;|!|$)")


def _hides(tag: str, attrs: dict[str, str | None]) -> str:
    if "hidden" in attrs:
        return "hidden attribute"
    style = re.sub(r"\s+", "", (attrs.get("style") or "").lower()[:1024])
    for pattern, how in _STYLE_HIDES:
        if pattern.search(style):
            return how
    # Two searches, not one pattern with ".*" between them: that one
    # backtracks over the style once per "height:0" in it.
    if "overflow:hidden" in style and _ZERO_HEIGHT.search(style):
        return "zero height"
    color = (attrs.get("color") or "").lower().strip()
    if _WHITE_TEXT.search(style) and (_WHITE_BACKGROUND.search(style) or "background" not in
                                      style):
        return "white text"
    if tag == "font" and re.fullmatch(_WHITE, color):
        return "white text"
    return ""


def hidden_html(markup: str, where: str = "html") -> list[Finding]:
    parser = _HiddenText()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, ValueError):  # HTMLParser on malformed declarations
        pass
    hidden = " ".join(" ".join(parser.hidden).split())
    if len(hidden) < 2:
        return []
    hows = ", ".join(sorted(parser.hows))
    inner = [f for f in scan_text(hidden, f"hidden {where}") if f.score >= 0.5]
    if inner:
        top = max(inner, key=lambda f: f.score)
        return [Finding("hidden_text", max(0.9, top.score),
                        f"instructions hidden from the reader ({hows})", "hidden_instructions",
                        where), *inner]
    # Newsletters hide a preheader line; hiding alone is a weak signal.
    score = 0.3 if len(hidden) < 400 else 0.45
    return [Finding("hidden_text", score, f"text hidden from the reader ({hows})",
                    "hidden_html", where)]


def invisible_characters(text: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    splits = len(_ZW_IN_WORD.findall(text))
    if splits >= 3:
        found.append(Finding("hidden_text", 0.65 if splits >= 6 else 0.5,
                             f"zero-width characters split {splits} words", "zero_width", where))
    if any(ch in text for ch in BIDI_OVERRIDES):
        found.append(Finding("hidden_text", 0.6, "bidirectional override reorders the text",
                             "bidi_override", where))
    elif any(ch in text for ch in BIDI_OTHER) and not _RTL.search(text):
        found.append(Finding("hidden_text", 0.45,
                             "bidirectional controls in text with no right-to-left script",
                             "bidi_control", where))
    return found


def _decoded_base64(blob: str) -> str | None:
    compact = "".join(blob.split())[:MAX_BASE64_CHARS]
    compact = compact[: len(compact) - len(compact) % 4]
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for ch in decoded if ch.isprintable() or ch in "\n\r\t")
    letters = sum(1 for ch in decoded if ch.isalpha())
    if not decoded or printable < 0.95 * len(decoded) or letters < 0.5 * len(decoded):
        return None
    return decoded


def obfuscation(text: str, flat: str, view: str, base: list[Finding],
                where: str) -> list[Finding]:
    """Rules that fire only once a disguise is taken off."""
    found: list[Finding] = []
    fired = {f.rule for f in base if f.score >= 0.5}
    for count, match in enumerate(_BASE64.finditer(text)):
        if count >= MAX_BASE64_BLOBS:
            break
        decoded = _decoded_base64(match.group())
        if decoded is None:
            continue
        inner = [f for f in scan_text(decoded, f"base64 in {where}") if f.score >= 0.5]
        if inner:
            found.append(Finding("obfuscation", 0.9, "instructions hidden in base64",
                                 "base64_instructions", where))
            found.extend(inner)
    if _CONFUSABLE_SCRIPT.search(flat) and _LATIN.search(flat):
        mixed = len(_MIXED_WORD.findall(flat))
        if mixed:
            folded = flat.translate(HOMOGLYPHS)
            new = [f for f in _rules(folded, words(folded), where,
                                     " (in look-alike letters)")
                   if f.rule not in fired and f.score >= 0.5]
            score = 0.9 if new else (0.55 if mixed >= 2 else 0.35)
            found.append(Finding("obfuscation", score,
                                 f"{mixed} words mix Latin with look-alike letters",
                                 "homoglyph", where))
            found.extend(new)
    if len(_LEET_TOKEN.findall(view)) >= 2:
        folded = view.translate(LEET)
        new = [f for f in _rules(folded, folded, where, " (in leetspeak)")
               if f.rule not in fired and not RULE_BY_NAME[f.rule].raw and f.score >= 0.5]
        if new:
            found.append(Finding("obfuscation", 0.85, "instructions written in leetspeak",
                                 "leet", where))
            found.extend(new)
    return found


RULE_BY_NAME = {rule.name: rule for rule in RULES}


def encoded_words(msg: Message) -> list[Finding]:
    """Headers that encode what needs no encoding, or encode a great deal."""
    total = 0
    plain = 0
    for _name, value in msg.raw_items():
        value = str(value)[:8192]
        for match in _ENCODED_WORD.finditer(value):
            total += 1
            if _ascii_only(match.group()):
                plain += 1
    if total > 20:
        return [Finding("obfuscation", 0.5, f"{total} encoded words in the header",
                        "encoded_words", "headers")]
    if plain >= 3:
        return [Finding("obfuscation", 0.35, "plain ASCII hidden in encoded words",
                        "encoded_words", "headers")]
    return []


def _ascii_only(word: str) -> bool:
    try:
        _charset, encoding, payload = word[2:-2].split("?", 2)
        if encoding in "bB":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = re.sub(r"=([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)),
                          payload.replace("_", " ")).encode("latin-1")
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return False
    return all(32 <= byte < 127 for byte in data)


def scan_part(part: Part) -> list[Finding]:
    flat = flatten(part.text)
    view = words(flat)
    found = _rules(flat, view, part.where)
    found += invisible_characters(part.text, part.where)
    if part.html:
        found += hidden_html(part.html, part.where)
        found += invisible_characters(part.html, part.where)
    found += obfuscation(part.text, flat, view, found, part.where)
    return found


def scan_inbound(msg: Message) -> list[Finding]:
    """Every finding in the message, strongest first (ties in a fixed order)."""
    found: list[Finding] = []
    for part in text_parts(msg):
        found += scan_part(part)
    found += encoded_words(msg)
    return _ordered(found)


def _ordered(found: Iterable[Finding]) -> list[Finding]:
    unique = {(f.category, f.rule, f.where, f.rationale): f for f in found}
    return sorted(unique.values(), key=lambda f: (-f.score, f.category, f.rule, f.where))


HOLD_CODE = "inbound_scan"


def screen(msg: Message, sensitivity: str) -> tuple[str, list[Finding]]:
    """The action the agent's inbound sensitivity takes (none, flag: deliver
    labelled, review: hold for a person, block: refuse), and the findings.
    For review, ``findings.hold_reason(found, HOLD_CODE)`` is what to store."""
    if sensitivity == "off":
        return "none", []
    findings = scan_inbound(msg)
    return verdict(findings, sensitivity), findings
