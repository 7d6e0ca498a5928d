"""The clone's address rewrite against PHP's own serialize and unserialize (Debian's php-cli): 400
random nested structures (arrays, objects, serialized data nested in strings, multibyte text, the
address in every form) serialized by PHP, rewritten, and unserialized by PHP again: none broken,
every string rewritten exactly as text would be, every other value the same."""

import base64
import json
import random
import subprocess

from wpfarm_assets.backups.clone import sql_literal, sql_rewrite
from wpfarm_assets.core.serialized import Addresses, rewrite_value

OLD, NEW = "shop.example.com", "http://staging.shop.example.com"
REWRITE = Addresses((OLD,), NEW).rewriter()
TEXTS = [f"https://{OLD}/wp-content/uploads/a.jpg", f"http://{OLD}", f"https:\\/\\/{OLD}\\/feed", f"//{OLD}/x.css",
         f"https%3A%2F%2F{OLD}%2Fpage", f"see https://{OLD}:8443/p?q=1#top", f"https://{OLD}.evil.example/",
         "héllo wörld ✓ 日本語", 'quotes " and ";} and s:3:"abc";', "line\nbreak\ttab", "", "a:2:{not serialized",
         f"mail@{OLD}", "0"]

PHP = r"""
function build($n) {
    if (is_array($n) && array_key_exists('__serialized__', $n)) return serialize(build($n['__serialized__']));
    if (is_array($n) && array_key_exists('__object__', $n)) return (object) array_map('build', $n['__object__']);
    return is_array($n) ? array_map('build', $n) : $n;
}
function normal($v) {
    if (is_object($v)) return ['__object__' => array_map('normal', (array) $v)];
    if (is_array($v)) return array_map('normal', $v);
    if (is_string($v) && $v !== 'b:0;' && ($u = @unserialize($v)) !== false) return ['__serialized__' => normal($u)];
    return $v;
}
while (($line = fgets(STDIN)) !== false) {
    $line = rtrim($line, "\n");
    if ($argv[1] === 'serialize') { echo base64_encode(serialize(build(json_decode($line, true)))), "\n"; continue; }
    $u = @unserialize(base64_decode($line));
    echo $u === false ? "BROKEN\n" : json_encode(normal($u), JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_UNICODE), "\n";
}
"""


def php(mode: str, lines: list[str]) -> list[str]:
    done = subprocess.run(["php", "-r", PHP, "--", mode], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, check=True, timeout=120)
    return done.stdout.splitlines()


def structure(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([rng.choice(TEXTS), rng.randint(-10**6, 10**6), rng.choice([True, False, None]),
                           round(rng.uniform(-1e3, 1e3), 3), rng.choice(TEXTS) + rng.choice(TEXTS)])
    children = [structure(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.55:
        return children
    named = {f"k{i}-{rng.choice(TEXTS)[:12]}": child for i, child in enumerate(children)}
    return {"__object__": named} if roll < 0.7 else {"__serialized__": named} if roll < 0.85 else named


def expected(node):
    """The structure as it must come back: every string (keys too) rewritten as text."""
    if isinstance(node, dict):  # (an empty one is PHP's empty array: [] in JSON)
        return {k if k.startswith("__") else REWRITE(k.encode()).decode(): expected(v) for k, v in node.items()} or []
    if isinstance(node, list):
        return [expected(v) for v in node]
    return REWRITE(node.encode()).decode() if isinstance(node, str) else node


def test_php_reads_every_rewritten_value_and_sees_every_address_replaced():
    rng = random.Random(20261207)
    structures = [{"root": structure(rng)} for _ in range(400)]
    serialized = [base64.b64decode(line) for line in php("serialize", [json.dumps(s) for s in structures])]
    results = [rewrite_value(value, REWRITE) for value in serialized]
    assert all(r.serialized and not r.broken for r in results)
    assert sum(r.value != value for r, value in zip(results, serialized, strict=True)) > 100  # many hold an address
    back = php("unserialize", [base64.b64encode(r.value).decode() for r in results])
    assert back.count("BROKEN") == 0
    for original, line in zip(structures, back, strict=True):
        assert json.loads(line) == json.loads(json.dumps(expected(original))), original


def test_text_json_and_encoded_forms_and_what_is_left_alone():
    assert REWRITE(f"<a href='https://{OLD}/x'>".encode()) == f"<a href='{NEW}/x'>".encode()
    assert REWRITE(f'{{"url":"https:\\/\\/{OLD}\\/x"}}'.encode()) == b'{"url":"http:\\/\\/staging.shop.example.com\\/x"}'
    assert REWRITE(f"u=https%3A%2F%2F{OLD}%2F".encode()) == b"u=http%3A%2F%2Fstaging.shop.example.com%2F"
    assert REWRITE(f"https://{OLD}.evil.example and mail@{OLD}".encode()) == f"https://{OLD}.evil.example and mail@{OLD}".encode()
    padded = rewrite_value(b' \n' + f's:{len(OLD) + 8}:"https://{OLD}";'.encode() + b'\n', REWRITE)  # WordPress trims
    assert padded.serialized and padded.value == b' \n' + f's:{len(NEW)}:"{NEW}";'.encode() + b'\n'
    broken = rewrite_value(b's:99:"https://shop.example.com";', REWRITE)  # a length that lies: left exactly as it was
    assert broken.broken and broken.value == b's:99:"https://shop.example.com";'


def test_the_server_rewrites_plain_text_exactly_as_python_does(db):
    """The clone rewrites plain values in MariaDB (REGEXP_REPLACE, PCRE) and serialized ones here:
    the same patterns must give the same bytes."""
    texts = [*TEXTS, f"HTTPS://{OLD.upper()}/Caps", f"x//{OLD}", f"a:b //{OLD}/ and https://{OLD}"]
    for text in texts:
        sql = sql_rewrite(sql_literal(text.encode()), Addresses((OLD,), NEW))
        assert bytes.fromhex(db.query(f"SELECT HEX({sql})")[0][0]) == REWRITE(text.encode()), text
