"""mailwarden.imap.subject and mailwarden.imap.threading: RFC 5256 SORT and THREAD."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailwarden.imap.subject import base_subject, is_reply_or_forward, subject_key
from mailwarden.imap.threading import (
    SortInput,
    Thread,
    ThreadInput,
    format_threads,
    sent_date,
    sort_messages,
    thread_orderedsubject,
    thread_references,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)

# --- base subject (RFC 5256 §2.1) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "base", "reply"),
    [
        ("Re: [list] Fwd: [fwd: subject] (fwd)", "subject", True),
        ("subject", "subject", False),
        ("", "", False),
        ("   ", "", False),
        ("Re:", "", True),
        ("Re: re: FWD: Fw: hello", "hello", True),
        ("Fw [x]: hi", "hi", True),
        ("Re : hi", "hi", True),
        ("[list] [other] Hi there", "Hi there", False),
        ("[list]", "[list]", False),  # step 4: a blob is only removed if a subj-base remains
        ("[list] Re: Hi", "Hi", True),
        ("Hi (fwd) (FWD)  ", "Hi", True),
        ("[Fwd: [fwd: nested]]", "nested", True),
        ("[fwd: Re: [list] wrapped (fwd)]", "wrapped", True),
        ("Real: thing", "Real: thing", False),
        ("Reply to all", "Reply to all", False),
        ("Re:\r\n\tHello\t  World", "Hello World", True),
        ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),
        ("=?iso-8859-1?q?Gr=FC=DFe?= =?utf-8?b?w6Q=?= und mehr", "Grüßeä und mehr", False),
        ("=?x-unknown?q?abc?= d", "abc d", False),
        ("=?utf-8?q?=FF=FEbad?=", "\ufffd\ufffdbad", False),
    ],
)
def test_base_subject(raw: str, base: str, reply: bool) -> None:
    assert base_subject(raw) == base
    assert is_reply_or_forward(raw) is reply


def test_base_subject_bad_encoded_words_do_not_raise() -> None:
    for raw in ("=?utf-8?b?!!!?=", "=?utf-8?b?YQ?=", "=?utf-8?x?abc?=", "=?utf-8?q?\\u12?=x"):
        assert isinstance(base_subject(raw), str)


def test_subject_key_casefolds() -> None:
    assert subject_key("RE: [LIST] Straße") == subject_key("re: strasse") == "strasse"


# --- SORT (RFC 5256 §3) ---------------------------------------------------------------------


def _sort(seq: int, **kwargs: object) -> SortInput:
    values: dict[str, object] = {"internal_date": T0, "date": None, "uid": seq * 10}
    values.update(kwargs)
    return SortInput(seq, **values)  # type: ignore[arg-type]


def test_sort_ties_by_sequence_number_even_when_reversed() -> None:
    msgs = [_sort(3, subject="b"), _sort(1, subject="Re: B"), _sort(2, subject="a")]
    assert sort_messages(msgs, [("SUBJECT", False)]) == [2, 1, 3]
    assert sort_messages(msgs, [("SUBJECT", True)]) == [1, 3, 2]
    assert sort_messages(msgs, [("SUBJECT", True)], uid=True) == [10, 30, 20]


def test_sort_date_falls_back_to_internal_date() -> None:
    msgs = [
        _sort(1, internal_date=T0 + timedelta(hours=10)),  # no Date: header
        _sort(2, date=T0 + timedelta(hours=9), internal_date=T0 + timedelta(hours=20)),
        _sort(3, date=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))),  # 07:00Z
    ]
    assert sort_messages(msgs, [("DATE", False)]) == [3, 2, 1]
    assert sort_messages(msgs, [("ARRIVAL", False)]) == [3, 1, 2]
    assert sent_date(None, T0) == T0
    assert sent_date(datetime(2024, 1, 1), T0 + timedelta(days=1)) == T0  # naive is UTC


def test_sort_multiple_keys() -> None:
    msgs = [
        _sort(1, from_mailbox="Bob", size=5, to_mailbox="z", cc_mailbox=""),
        _sort(2, from_mailbox="alice", size=9, to_mailbox="y", cc_mailbox="c"),
        _sort(3, from_mailbox="bob", size=7, to_mailbox="x", cc_mailbox="c"),
    ]
    assert sort_messages(msgs, [("FROM", False), ("SIZE", True)]) == [2, 3, 1]
    assert sort_messages(msgs, [("cc", False), ("TO", False)]) == [1, 3, 2]
    assert sort_messages(msgs, []) == [1, 2, 3]
    with pytest.raises(ValueError, match="BOGUS"):
        sort_messages(msgs, [("BOGUS", False)])


# --- THREAD ---------------------------------------------------------------------------------


def _msg(
    n: int, refs: tuple[str, ...] = (), subject: str | None = None, **kw: object
) -> ThreadInput:
    values: dict[str, object] = {"message_id": f"<m{n}>", "sent_date": T0 + timedelta(minutes=n)}
    values.update(kw)
    return ThreadInput(
        n, subject=f"S{n}" if subject is None else subject, references=refs, **values
    )  # type: ignore[arg-type]


def test_rfc5256_section4_response_example() -> None:
    msgs = [
        _msg(2),
        _msg(3),
        _msg(6, ("<m3>",)),
        _msg(4, ("<m3>", "<m6>")),
        _msg(23, ("<m3>", "<m6>", "<m4>")),
        _msg(44, ("<m3>", "<m6>")),
        _msg(7, (), in_reply_to="<m44>"),
        _msg(96, ("<m44>", "<m7>")),
    ]
    assert format_threads(thread_references(msgs)) == b"(2)(3 6 (4 23)(44 7 96))"


# One mailbox consistent with both THREAD command examples of RFC 5256 §3 (the RFC does
# not give the messages, so subjects, dates and references were chosen to reproduce them).
_DATE_ORDER = [
    *(166, 167, 168, 169, 172, 170, 171, 173, 174, 175, 176, 178, 181, 180, 179, 177),
    *(183, 182, 188, 184, 185, 186, 187, 189, *range(190, 209)),
]
_SUBJECTS = {
    **dict.fromkeys((174, 175, 176, 178, 180, 181), "S174"),
    **dict.fromkeys((177, 182, 183, 184, 185, 186, 187, 188, 189), "S177"),
    **dict.fromkeys((194, 195), "S194"),
    **dict.fromkeys((196, 197, 198), "S196"),
    202: "S200",
    207: "S206",
    175: "Re: S174",
    186: "RE: [list] s177",
}
_REFS = {
    **dict.fromkeys((170, 179), ("<x170>",)),
    **dict.fromkeys((174, 175, 176, 178, 180, 181), ("<x174>",)),
    **dict.fromkeys((177, 183, 182, 188, 185, 187), ("<x177>",)),
    **dict.fromkeys((184, 189), ("<x177>", "<m188>")),
    186: ("<x177>", "<m185>"),
    **dict.fromkeys((194, 195), ("<x194>",)),
    196: ("<x194>", "<m195>"),
    198: ("<m197>",),
    202: ("<m200>",),
    206: ("<m205>",),
    207: ("<m205>", "<m206>"),
}
RFC_MAILBOX = [
    ThreadInput(
        n,
        T0 + timedelta(minutes=_DATE_ORDER.index(n)),
        _SUBJECTS.get(n, f"S{n}"),
        f"<m{n}>",
        references=_REFS.get(n, ()),
    )
    for n in range(166, 209)
]


def test_rfc5256_section3_orderedsubject_example() -> None:
    assert format_threads(thread_orderedsubject(RFC_MAILBOX)) == (
        b"(166)(167)(168)(169)(172)(170)(171)(173)(174 (175)(176)(178)(181)(180))"
        b"(179)(177 (183)(182)(188)(184)(185)(186)(187)(189))(190)(191)(192)(193)"
        b"(194 195)(196 (197)(198))(199)(200 202)(201)(203)(204)(205)(206 207)(208)"
    )


def test_rfc5256_section3_references_example() -> None:
    assert format_threads(thread_references(list(reversed(RFC_MAILBOX)))) == (
        b"(166)(167)(168)(169)(172)((170)(179))(171)(173)((174)(175)(176)(178)(181)(180))"
        b"((177)(183)(182)(188 (184)(189))(185 186)(187))(190)(191)(192)(193)"
        b"((194)(195 196))(197 198)(199)(200 202)(201)(203)(204)(205 206 207)(208)"
    )


def test_references_subject_grouping_step5() -> None:
    # A reply without references goes under the original; two originals get a dummy.
    assert (
        format_threads(thread_references([_msg(1, subject="Hi"), _msg(2, subject="Re: hi")]))
        == b"(1 2)"
    )
    assert (
        format_threads(thread_references([_msg(2, subject="Re: hi"), _msg(3, subject="hi")]))
        == b"(3 2)"
    )
    both = [_msg(1, subject="Hi"), _msg(2, subject="hi"), _msg(3, subject="Re: Hi")]
    assert format_threads(thread_references(both)) == b"((1)(2)(3))"
    empty = [_msg(1, subject=""), _msg(2, subject="Re:")]
    assert format_threads(thread_references(empty)) == b"(1)(2)"


def test_references_in_reply_to_only_when_no_references() -> None:
    msgs = [_msg(1), _msg(2), _msg(3, ("<m1>",), in_reply_to="<m2>"), _msg(4, in_reply_to="<m2>")]
    assert format_threads(thread_references(msgs)) == b"(1 3)(2 4)"


def test_references_cycles_and_self_references() -> None:
    msgs = [
        _msg(1, ("<m2>",)),
        _msg(2, ("<m1>",)),
        _msg(3, ("<m3>",)),
        _msg(4, ("<m5>", "<m4>", "<m5>")),
        _msg(5, ("<m4>",)),
    ]
    out = format_threads(thread_references(msgs))
    assert out == b"(2 1)(3)(5 4)"
    numbers = out.replace(b"(", b" ").replace(b")", b" ").split()
    assert sorted(int(n) for n in numbers) == [1, 2, 3, 4, 5]


def test_references_duplicate_and_missing_message_ids() -> None:
    msgs = [
        _msg(1, message_id="<dup>"),
        _msg(2, message_id="<dup>"),
        _msg(3, ("<dup>",)),
        _msg(4, message_id=None),
        _msg(5, ("<dup>",), message_id=""),
    ]
    assert format_threads(thread_references(msgs)) == b"(1 (3)(5))(2)(4)"


def test_references_truncated_references_last_reference_wins() -> None:
    # Message 2's References put m3 under m1 (step 1A); message 3's own References name
    # only m9, so step 1B breaks that link and m3 moves under the (pruned) dummy m9.
    msgs = [_msg(1), _msg(2, ("<m1>", "<m3>")), _msg(3, ("<m9>",))]
    assert format_threads(thread_references(msgs)) == b"(1)(3 2)"


def test_deep_chain_and_many_siblings() -> None:
    n = 10_000
    chain = [_msg(1)] + [_msg(i, in_reply_to=f"<m{i - 1}>") for i in range(2, n + 1)]
    expected = ("(" + " ".join(str(i) for i in range(1, n + 1)) + ")").encode()
    assert format_threads(thread_references(list(reversed(chain)))) == expected
    fan = [_msg(1)] + [_msg(i, ("<m1>",)) for i in range(2, n + 1)]
    body = "".join(f"({i})" for i in range(2, n + 1))
    assert format_threads(thread_references(fan)) == f"(1 {body})".encode()
    same = [_msg(i, subject="x") for i in range(1, n + 1)]
    assert format_threads(thread_orderedsubject(same)) == f"(1 {body})".encode()


def test_long_references_header() -> None:
    refs = tuple(f"<r{i}>" for i in range(10_000))
    msgs = [_msg(1, refs), _msg(2, refs[::-1]), _msg(3, (refs[5000],))]
    assert format_threads(thread_references(msgs)) == b"((1)(2)(3))"


def test_format_threads_dummies_and_empty() -> None:
    assert format_threads([]) == b""
    tree = [Thread(None, (Thread(1), Thread(2, (Thread(3),)))), Thread(4, (Thread(5),))]
    assert format_threads(tree) == b"((1)(2 3))(4 5)"


def test_orderedsubject_basic() -> None:
    msgs = [
        _msg(1, subject="b"),
        _msg(2, subject="Re: a"),
        _msg(3, subject="A"),
        _msg(4, subject="B"),
    ]
    assert format_threads(thread_orderedsubject(msgs)) == b"(1 4)(2 3)"
