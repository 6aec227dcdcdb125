"""Outbound data-loss guard: what an agent must not mail out.

Families, each a ``Finding`` category:

- ``secret``: private keys (PEM, OpenSSH, PGP), cloud and SaaS tokens (AWS,
  GCP, Azure, GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic), JWTs,
  database URLs with a password, ``.env`` blocks of KEY=secret lines.
- ``personal_data``: card numbers (Luhn and a known issuer prefix), IBANs
  (length per country and mod-97), US SSNs (the SSA's format rules), Spanish
  DNI/NIE (check letter); next to their names only: Dutch BSN (11-test),
  Canadian SIN (Luhn), French NIR (mod-97 key).
- ``risky_attachment``: key stores, private keys, .env files, databases, by
  file name or declared type.

Text parts and text attachments are read (``parts.text_parts``), at most
``parts.MAX_PART_CHARS`` each. Patterns are anchored on literal prefixes or
fixed-width classes with bounded repeats: linear in the text. Rationales
name the kind and where, never the value.

``outbound_hold`` is what the content filter asks: None (send) or the
``hold_reason`` to store with the held message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any

from e2a.core.protection.findings import Finding, hold_reason, verdict
from e2a.core.protection.parts import Attachment, attachments, text_parts

HOLD_CODE = "outbound_scan"
# Held from this action on: review and block both hold an outbound message
# for a person (the API's outbound scan has no silent drop).
_HOLDING = ("review", "block")


@dataclass(frozen=True)
class Pattern:
    name: str
    score: float
    regex: re.Pattern[str]
    rationale: str
    check: Callable[[re.Match[str]], bool] | None = None


_PLACEHOLDER = re.compile(r"^(?:\*+|x+|\.+|-+|<[^>]*>|\$\{[^}]*\}|\$\w+|\{\{[^}]*\}\}|%[^%]*%|"
                          r"changeme|change_me|password|passwd|secret|example|your[_-]?\w*|"
                          r"redacted|hidden|todo|none|null|test|dummy|placeholder|xxx\w*|"
                          r"\.\.\.|…)$", re.IGNORECASE)


def _not_placeholder(value: str) -> bool:
    return bool(value) and not _PLACEHOLDER.match(value)


def _not_aws_example(match: re.Match[str]) -> bool:
    """AWS's documentation keys (AKIAIOSFODNN7EXAMPLE) are quoted in docs and tickets."""
    return not match.group().endswith("EXAMPLE")


def _jwt(match: re.Match[str]) -> bool:
    head = match.group(1)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _db_password(match: re.Match[str]) -> bool:
    return _not_placeholder(match.group("password"))


def _p(name: str, score: float, regex: str, rationale: str,
       check: Callable[[re.Match[str]], bool] | None = None, flags: int = 0) -> Pattern:
    return Pattern(name, score, re.compile(regex, flags), rationale, check)


SECRETS: tuple[Pattern, ...] = (
    _p("private_key", 0.99,
       r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
       "a private key block"),
    _p("aws_access_key", 0.92, r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b", "an AWS access key id",
       _not_aws_example),
    _p("aws_secret_key", 0.97,
       r"(?i:aws_?secret_?access_?key|aws_?secret)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
       "an AWS secret access key"),
    _p("gcp_service_account", 0.98,
       r"\"type\"\s*:\s*\"service_account\"", "a Google Cloud service account key file"),
    _p("gcp_api_key", 0.9, r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])", "a Google API key"),
    _p("azure_storage_key", 0.97,
       r"AccountKey=[A-Za-z0-9+/]{80,100}={0,2}", "an Azure storage account key"),
    _p("azure_sas", 0.85, r"[?&]sv=\d{4}-\d{2}-\d{2}&[^\s\"']{0,300}?\bsig=[A-Za-z0-9%+/]{30,}",
       "an Azure shared access signature"),
    _p("github_token", 0.97, r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,100})\b",
       "a GitHub token"),
    _p("gitlab_token", 0.97, r"\bglpat-[A-Za-z0-9_\-]{20}(?![A-Za-z0-9_\-]{2})",
       "a GitLab personal access token"),
    _p("slack_token", 0.95, r"\bxox[abposr]-[0-9A-Za-z\-]{10,100}", "a Slack token"),
    _p("slack_webhook", 0.9,
       r"https://hooks\.slack\.com/services/T[0-9A-Z]{6,12}/B[0-9A-Z]{6,12}/[0-9A-Za-z]{20,}",
       "a Slack incoming-webhook URL"),
    _p("stripe_key", 0.97, r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,100}\b", "a Stripe live secret key"),
    _p("stripe_test_key", 0.8, r"\b(?:sk|rk)_test_[0-9A-Za-z]{20,100}\b",
       "a Stripe test secret key"),
    _p("anthropic_key", 0.97, r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{80,120}",
       "an Anthropic API key"),
    _p("openai_key", 0.95,
       r"\bsk-(?:proj-|svcacct-|admin-)[A-Za-z0-9_\-]{40,200}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ"
       r"[A-Za-z0-9]{20}\b|\bsk-[A-Za-z0-9]{48}\b",
       "an OpenAI API key"),
    _p("jwt", 0.85,
       r"\b(eyJ[A-Za-z0-9_\-]{8,2000})\.eyJ[A-Za-z0-9_\-]{8,8000}\.[A-Za-z0-9_\-]{16,2000}",
       "a signed JSON Web Token", _jwt),
    _p("database_url", 0.92,
       r"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|"
       r"sqlserver|oracle)://[^\s:/@\"'<>]{1,100}:(?P<password>[^\s@/\"'<>]{1,200})@"
       r"[A-Za-z0-9.\-\[\]]{1,255}",
       "a database connection string with its password", _db_password),
)

_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Z][A-Z0-9_]{1,60})\s*=\s*[\"']?([^\s\"'#]{1,500})",
                       re.MULTILINE)
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|PWD|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|"
                          r"ACCESS_KEY|AUTH|SALT|DSN")


def env_block(text: str, where: str) -> list[Finding]:
    """Three or more KEY=value lines in a row, one of them a named secret
    with a real-looking value: a .env file pasted or attached."""
    lines = text.split("\n")
    run = 0
    secret_lines = 0
    best = 0
    for line in lines[:20000]:
        match = _ENV_LINE.match(line.strip())
        if match is None:
            if line.strip() and not line.lstrip().startswith("#"):
                run, secret_lines = 0, 0
            continue
        run += 1
        name, value = match.group(1), match.group(2)
        if _SECRET_NAME.search(name) and _not_placeholder(value) and len(value) >= 8:
            secret_lines += 1
        if run >= 3 and secret_lines:
            best = max(best, secret_lines)
    if not best:
        return []
    return [Finding("secret", 0.9, f"an environment file with {best} secret values",
                    "env_block", where)]


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_issuer(digits: str) -> str:
    """The network whose prefix and length the number has, "" for none."""
    length = len(digits)
    two, four, six = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4" and length in (13, 16, 19):
        return "Visa"
    if (51 <= two <= 55 or 222100 <= six <= 272099) and length == 16:
        return "Mastercard"
    if two in (34, 37) and length == 15:
        return "American Express"
    if (four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649) and length in (16, 19):
        return "Discover"
    if 3528 <= four <= 3589 and length in (16, 19):
        return "JCB"
    if (two in (36, 38) or 300 <= int(digits[:3]) <= 305) and length == 14:
        return "Diners Club"
    return ""


# Digits in one run or in groups of 4 (or Amex's 4-6-5) with one separator.
_CARD = re.compile(r"(?<![\d.\-/])(?:\d{13,19}|\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|"
                   r"\d{4}([ \-])\d{6}\2\d{4,5})(?![\d\-/]|\.\d)")
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30,
    "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}
_IBAN = re.compile(r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b")
_SSN = re.compile(r"(?<![\d\-])(\d{3})-(\d{2})-(\d{4})(?![\d\-])")
_SSN_CONTEXT = re.compile(r"(?i:\bssn\b|social security|\bss#|taxpayer|\btin\b)")
# Numbers the SSA never issued but that circulate in print (Woolworth's wallet card).
_SSN_KNOWN_FAKE = frozenset({"078-05-1120", "219-09-9999", "123-45-6789"})
_DNI = re.compile(r"(?<![A-Za-z0-9])([XYZ]?)(\d{7,8})-?([A-Z])(?![A-Za-z0-9])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_BSN = re.compile(r"(?i:\b(?:bsn|burgerservicenummer|sofinummer)\b)\D{0,20}(\d{9})\b")
# Canadian SIN and French NIR: nine and fifteen digits pass their checks too
# often by chance to count without their name in the text.
_SIN = re.compile(r"(?<![\d-])([1-79]\d{2})([ -]?)(\d{3})\2(\d{3})(?![\d-])")
_SIN_CONTEXT = re.compile(r"(?i:\bsin\b|social insurance|\bnas\b|assurance sociale)")
_NIR = re.compile(r"(?<!\d)([12]) ?(\d{2}) ?(0[1-9]|1[0-2]|[2-9]\d) ?(\d{2}|2[AB]) ?(\d{3}) ?"
                  r"(\d{3}) ?(\d{2})(?!\d)")
_NIR_CONTEXT = re.compile(r"(?i:\bnir\b|s[ée]curit[ée] sociale|num[ée]ro de s[ée]cu|\binsee\b)")


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA's rules: no area 000, 666 or 900-999, no group 00, no serial 0000."""
    return (area not in ("000", "666") and not area.startswith("9") and group != "00"
            and serial != "0000")


def dni_valid(prefix: str, digits: str, letter: str) -> bool:
    if not prefix and len(digits) != 8:
        return False
    number = int(str("XYZ".index(prefix)) + digits) if prefix else int(digits)
    return _DNI_LETTERS[number % 23] == letter


def nir_valid(groups: tuple[str, ...]) -> bool:
    """France's NIR: the key is 97 minus the 13 digits mod 97 (Corsica's
    departments 2A and 2B count as 19 and 18)."""
    body = "".join(groups[:6]).replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(groups[6])


def bsn_valid(digits: str) -> bool:
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return digits[0] != "0" and (total - int(digits[8])) % 11 == 0


MAX_HITS_PER_RULE = 64


def personal_data(text: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    for count, match in enumerate(_CARD.finditer(text)):
        if count >= MAX_HITS_PER_RULE:
            break
        digits = re.sub(r"\D", "", match.group())
        issuer = card_issuer(digits)
        if issuer and luhn(digits) and len(set(digits)) > 1:
            found.append(Finding("personal_data", 0.85, f"a {issuer} card number",
                                 "card_number", where))
            break
    for count, match in enumerate(_IBAN.finditer(text)):
        if count >= MAX_HITS_PER_RULE:
            break
        if iban_valid(match.group(1)):
            found.append(Finding("personal_data", 0.6, "an IBAN bank account number", "iban",
                                 where))
            break
    context = bool(_SSN_CONTEXT.search(text))
    for count, match in enumerate(_SSN.finditer(text)):
        if count >= MAX_HITS_PER_RULE:
            break
        if match.group() not in _SSN_KNOWN_FAKE and ssn_valid(*match.groups()):
            found.append(Finding("personal_data", 0.85 if context else 0.55,
                                 "a US social security number", "us_ssn", where))
            break
    for count, match in enumerate(_DNI.finditer(text)):
        if count >= MAX_HITS_PER_RULE:
            break
        if dni_valid(*match.groups()):
            found.append(Finding("personal_data", 0.8, "a Spanish DNI/NIE number", "es_dni",
                                 where))
            break
    if _SIN_CONTEXT.search(text):
        for count, match in enumerate(_SIN.finditer(text)):
            if count >= MAX_HITS_PER_RULE:
                break
            if luhn(match.group(1) + match.group(3) + match.group(4)):
                found.append(Finding("personal_data", 0.8,
                                     "a Canadian social insurance number", "ca_sin", where))
                break
    if _NIR_CONTEXT.search(text):
        for count, match in enumerate(_NIR.finditer(text)):
            if count >= MAX_HITS_PER_RULE:
                break
            if nir_valid(match.groups()):
                found.append(Finding("personal_data", 0.8, "a French social security number "
                                     "(NIR)", "fr_nir", where))
                break
    for count, match in enumerate(_BSN.finditer(text)):
        if count >= MAX_HITS_PER_RULE:
            break
        if bsn_valid(match.group(1)):
            found.append(Finding("personal_data", 0.8, "a Dutch citizen service number (BSN)",
                                 "nl_bsn", where))
            break
    return found


def secrets(text: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    for pattern in SECRETS:
        for count, match in enumerate(pattern.regex.finditer(text)):
            if count >= MAX_HITS_PER_RULE:
                break
            if pattern.check is None or pattern.check(match):
                found.append(Finding("secret", pattern.score, pattern.rationale, pattern.name,
                                     where))
                break
    found += env_block(text, where)
    return found


# (suffix or exact name, score, what it is)
_RISKY_NAMES: tuple[tuple[str, float, str], ...] = (
    (".pem", 0.85, "a PEM key or certificate file"),
    (".key", 0.9, "a private key file"),
    (".p12", 0.9, "a PKCS#12 key store"),
    (".pfx", 0.9, "a PKCS#12 key store"),
    (".jks", 0.9, "a Java key store"),
    (".keystore", 0.9, "a key store"),
    (".ppk", 0.95, "a PuTTY private key"),
    (".kdbx", 0.95, "a KeePass password database"),
    (".env", 0.9, "an environment file"),
    (".sqlite", 0.8, "a database file"),
    (".sqlite3", 0.8, "a database file"),
    (".db", 0.8, "a database file"),
    (".mdb", 0.8, "a database file"),
    (".sql", 0.6, "a database dump"),
    (".tfstate", 0.85, "a Terraform state file (holds secrets)"),
    (".htpasswd", 0.9, "a password file"),
    (".netrc", 0.9, "a credentials file"),
    (".npmrc", 0.8, "a package-registry credentials file"),
    (".pypirc", 0.8, "a package-registry credentials file"),
    ("id_rsa", 0.95, "an SSH private key"),
    ("id_dsa", 0.95, "an SSH private key"),
    ("id_ecdsa", 0.95, "an SSH private key"),
    ("id_ed25519", 0.95, "an SSH private key"),
    ("credentials", 0.8, "a credentials file"),
    ("wallet.dat", 0.95, "a cryptocurrency wallet"),
    ("shadow", 0.8, "a password hash file"),
)
_RISKY_TYPES = {
    "application/x-pem-file": (0.85, "a PEM key or certificate file"),
    "application/x-pkcs12": (0.9, "a PKCS#12 key store"),
    "application/pkcs12": (0.9, "a PKCS#12 key store"),
    "application/pkcs8": (0.95, "a private key"),
    "application/x-sqlite3": (0.8, "a database file"),
    "application/vnd.sqlite3": (0.8, "a database file"),
}


def risky_attachment(attachment: Attachment) -> Finding | None:
    name = attachment.filename.lower().rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    where = f"attachment {attachment.filename or attachment.content_type}"
    if name:
        base = name[:-4] if name.endswith(".txt") else name  # id_rsa.txt is still id_rsa
        for suffix, score, what in _RISKY_NAMES:
            if suffix.startswith("."):
                hit = base.endswith(suffix) or base == suffix.lstrip(".")
                if suffix == ".env":  # .env.production, prod.env
                    hit = hit or base.startswith(".env.")
            else:
                hit = base == suffix or (base.startswith(suffix + ".")
                                         and not base.endswith(".pub"))
            if hit:
                return Finding("risky_attachment", score, what, "risky_name", where)
    risky = _RISKY_TYPES.get(attachment.content_type.lower())
    if risky:
        return Finding("risky_attachment", risky[0], risky[1], "risky_type", where)
    return None


def scan_text(text: str, where: str = "body") -> list[Finding]:
    return secrets(text, where) + personal_data(text, where)


def scan_outbound(msg: Message) -> list[Finding]:
    """Every finding in the message, strongest first (ties in a fixed order)."""
    found: list[Finding] = []
    for part in text_parts(msg):
        found += scan_text(part.text if not part.html else part.html + "\n" + part.text,
                           part.where)
    for attachment in attachments(msg):
        finding = risky_attachment(attachment)
        if finding is not None:
            found.append(finding)
    unique = {(f.category, f.rule, f.where): f for f in found}
    return sorted(unique.values(), key=lambda f: (-f.score, f.category, f.rule, f.where))


def outbound_hold(msg: Message, sensitivity: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """``(hold_reason, findings)``: the hold reason when the agent's outbound
    sensitivity holds this message (review or block), None to send it."""
    if sensitivity == "off":
        return None, []
    findings = scan_outbound(msg)
    if verdict(findings, sensitivity) in _HOLDING:
        return hold_reason(findings, HOLD_CODE), findings
    return None, findings
