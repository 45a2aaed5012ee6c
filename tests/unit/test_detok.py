from keel.detok import StopMatcher, Utf8Assembler


def test_split_multibyte_characters_are_held_until_complete():
    data = "日本🙂".encode()
    utf8 = Utf8Assembler()
    pieces = [utf8.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) == "日本🙂"
    assert all("\ufffd" not in piece for piece in pieces)
    assert [p for p in pieces if p] == ["日", "本", "🙂"]


def test_stop_string_spanning_pieces_never_leaks():
    stops = StopMatcher(("STOP",))
    out = []
    for piece in ["one S", "T", "O", "P two"]:
        text, stop = stops.feed(piece)
        out.append(text)
        if stop:
            break
    assert "".join(out) == "one "
    assert stop == "STOP"


def test_false_prefix_is_released():
    stops = StopMatcher(("STOP",))
    assert stops.feed("ST") == ("", None)
    assert stops.feed("AR") == ("STAR", None)
    assert stops.feed("S") == ("", None)
    assert stops.flush() == "S"


def test_earliest_of_several_stop_strings_wins():
    stops = StopMatcher(("world", "lo"))
    assert stops.feed("hello world") == ("hel", "lo")
