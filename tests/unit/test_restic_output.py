"""What restic 0.14's `backup --json` says on stderr when files go away or cannot be read."""

from resources.restic import _vanished

GONE = '{"message_type":"error","error":{"Op":"lstat","Path":"/s/wp-content/cache/%s","Err":2},"during":"%s","item":"x"}'
DENIED = '{"message_type":"error","error":{"Op":"open","Path":"/s/wp-content/secret.jpg","Err":13},"during":"archival","item":"x"}'


def test_files_that_went_away_are_counted_once_each():
    lines = [GONE % ("a", "scan"), GONE % ("a", "archival"), GONE % ("b", "archival")]
    assert _vanished("\n".join(lines)) == 2


def test_a_file_that_could_not_be_read_is_not_a_vanished_one():
    assert _vanished("\n".join([GONE % ("a", "archival"), DENIED])) is None
    assert _vanished("") is None


def test_a_cut_first_line_of_the_stderr_tail_is_ignored():
    assert _vanished('Path":"/s/x","Err":13},"during":"archival"}\n' + GONE % ("a", "archival")) == 1
