"""Sessions across time and sessions (issue 43): the period a message asks about ("last week",
"before my move") filters recall; `--memory-from` recalls from other sessions; what recall
placed, and how long it took, is in `--stats` and /memory. Histories are imported with
`observe(at=...)`: the dates are real store dates, not mocks."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from longchat.api import open_runner
from longchat.chat.session import SessionConversation
from longchat.chat.store import Store
from longchat.text.when import period, without_period

NOW = datetime(2026, 3, 18, 15, 0).timestamp()  # a Wednesday


def day(month: int, d: int, hour: int = 12) -> float:
    return datetime(2026, month, d, hour).timestamp()


@pytest.mark.parametrize("text, first, last", [
    ("What did I do yesterday?", "2026-03-17", "2026-03-17"),
    ("What did I say last week?", "2026-03-09", "2026-03-15"),
    ("Anything this week?", "2026-03-16", "2026-03-18"),
    ("What did I cook last month?", "2026-02-01", "2026-02-28"),
    ("What did I tell you in January?", "2026-01-01", "2026-01-31"),
    ("What did I plan in December?", "2025-12-01", "2025-12-31"),
    ("Where was I on Monday?", "2026-03-16", "2026-03-16"),
    ("What happened two weeks ago?", "2026-03-01", "2026-03-07"),
    ("What did I say in 2025?", "2025-01-01", "2025-12-31"),
])
def test_periods_are_calendar_spans_before_now(text, first, last):
    found = period(text, NOW)
    assert found is not None, text
    assert datetime.fromtimestamp(found.start).strftime("%Y-%m-%d") == first
    assert datetime.fromtimestamp(found.end - 1).strftime("%Y-%m-%d") == last
    assert found.phrase.lower() not in without_period(text, found).lower()


def test_an_event_period_needs_the_events_date():
    move = day(3, 2)
    found = period("What was I doing the week before my move?", NOW, lambda words: move if "move" in words else None)
    assert (found.start, found.end) == (datetime(2026, 2, 23).timestamp(), datetime(2026, 3, 2).timestamp())
    assert period("What did I do before my wedding?", NOW, lambda words: None) is None
    assert period("What is my sister's name?", NOW) is None


@pytest.fixture
def tiny_runner(home, tiny_chat_model):
    return open_runner("full", str(tiny_chat_model), overrides=["generation.max_new_tokens=8"])


def test_recall_keeps_to_the_period_asked_about(tiny_runner, tmp_path):
    conv = SessionConversation(tiny_runner, "life", store=Store(tmp_path / "s.db"))
    conv.observe("I started a pottery class today, it was messy fun.", "Sounds great!", at=day(2, 20))
    conv.observe("Packing boxes all week, the flat is chaos.", "Good luck with it.", at=day(2, 26))
    conv.observe("We finally moved to Tampere!", "Congratulations!", at=day(3, 2))
    conv.observe("My pottery class made bowls this time.", "Nice.", at=day(3, 12))
    for i in range(8):
        conv.observe(f"Tell me one short fact about the number {i}.", f"The number {i} is a number.", at=day(3, 17))
    conv.now = NOW
    placed = conv.relevant("What was I doing the week before my move?")
    assert any("Packing boxes" in line for line in placed), placed
    assert not any("bowls" in line for line in placed)
    assert "the week before my move (2026-02-23 to 2026-03-01)" == str(conv.period)
    placed = conv.relevant("What did my pottery class make last week?")
    assert any("bowls" in line and "(2026-03-12)" in line for line in placed), placed
    assert not any("messy" in line for line in placed)
    info = conv.recall_info()
    assert info["placed"] == 0 and info["recall_ms"] >= 0  # nothing assembled yet: relevant() only
    conv.close()


def test_memory_from_recalls_other_sessions_facts_with_their_name(tiny_runner, tmp_path, cli):
    store_path = tmp_path / "s.db"
    home = SessionConversation(tiny_runner, "home", store=Store(store_path))
    home.observe("My sister is called Alma.", "Nice name.", at=day(3, 1))
    home.close()
    work = SessionConversation(tiny_runner, "work", store=Store(store_path))
    assert not any("Alma" in x for x in work.relevant("What is my sister called?"))
    work.recall_from(["all"])
    placed = work.relevant("What is my sister called?")
    assert any("Alma" in x and "session 'home'" in x for x in placed), placed
    work.close()


def test_stats_and_memory_show_what_recall_placed(cli, tmp_path):
    """A real process on the bundled model: the facts said earlier are placed, and --stats says
    which, with the recall time; sessions facts lists facts across sessions."""
    code, _, err = cli("chat", "--session", "a", "-n", "8", input="My sister is called Alma.\n")
    assert code == 0, err
    code, out, err = cli("chat", "--session", "b", "--memory-from", "a", "--stats", "-n", "16",
                         input="What is my sister called?\n/memory\n")
    assert code == 0, err
    stats = [json.loads(line) for line in err.splitlines() if line.startswith("{")][-1]
    memory = stats["memory"]
    assert memory["placed"] >= 1 and memory["memory_from"] == ["a"] and memory["recall_ms"] >= 0
    assert any("Alma" in m and "session 'a'" in m for m in memory["memories"]), memory
    assert "recall took" in out + err and "also from a" in out + err
    code, out, err = cli("sessions", "facts", "--json")
    assert code == 0 and [(f["session"], "Alma" in f["content"]) for f in json.loads(out)] == [("a", True)]
    code, _, err = cli("chat", "--memory-from", "a", input="hi\n")
    assert code == 2 and "--session" in err
    code, _, err = cli("chat", "--session", "c", "--memory-from", "nope", input="hi\n")
    assert code == 6 and "no session named 'nope'" in err


def test_facts_that_hold_the_asked_words_are_placed_alone_and_newer_statements_beside_them(tiny_runner, tmp_path):
    """Beside facts found only by meaning, the bundled model answered "What is my son's name?"
    with the cousin's (bench/longmem.py, train seeds): the facts that hold the asked words go
    alone, newest first; a later message on the asked words may update them, so it stays."""
    conv = SessionConversation(tiny_runner, "life", store=Store(tmp_path / "s.db"))
    conv.observe("My cousin's name is Mateo.", "Nice.", at=day(3, 2))
    conv.observe("My son is called Yuki.", "Lovely name.", at=day(3, 3))
    conv.observe("My partner's name is Zofia.", "Noted.", at=day(3, 4))
    conv.observe("I run 50 kilometres a week.", "Impressive.", at=day(3, 5))
    conv.observe("I'm up to 25 kilometres a week of running now, after the injury.", "Take care.", at=day(3, 12))
    conv.observe("Tell me one short fact about the number 50.", "50 is even.", at=day(3, 13))
    conv.now = NOW
    placed = conv.relevant("What is my son's name?")
    assert len(placed) == 1 and placed[0].endswith("My son is called Yuki."), placed
    placed = conv.relevant("What is my partner's name?")
    assert len(placed) == 1 and "Zofia" in placed[0], placed
    placed = conv.relevant("How far do I run a week?")
    assert any("25 kilometres" in line for line in placed) and any("50 kilometres" in line for line in placed), placed
    assert not any("number 50" in line for line in placed)  # a request tells nothing about the user
    conv.close()


def test_a_request_or_a_summary_does_not_count_as_having_told(tiny_runner, tmp_path):
    """"What is my house number?" after forty "Tell me one short fact about the number N": the
    user never said it, so it is abstained on without the model."""
    from longchat.chat.session import ABSTAIN

    conv = SessionConversation(tiny_runner, "life", store=Store(tmp_path / "s.db"))
    for i in range(6):
        conv.observe(f"Tell me one short fact about the number {i}.", f"The number {i} is a number.", at=day(3, 2))
    last = conv.store.messages(conv.sid)[-1].id
    conv.store.page_out(conv.sid, "The user asked about the numbers 0 to 5 and their house number.", last)
    conv.observe("I had to skip dessert at the party because of my sesame allergy.", "Oh no.", at=day(3, 3))
    conv.observe("Last month I was in Iceland for a friend's wedding.", "Lovely.", at=day(3, 4))
    assert conv.send("What is my house number?", at=NOW) == ABSTAIN
    assert conv.send("What is my best friend's name?", at=NOW) == ABSTAIN  # "a friend" is not "best friend"
    assert conv.send("What am I allergic to?", at=NOW) != ABSTAIN
    conv.observe("My best friend Bram came over for dinner.", "Nice.", at=day(3, 5))
    assert conv.send("What is my best friend's name?", at=NOW) != ABSTAIN
    assert any("sesame" in f["content"] for f in conv.store.facts(conv.sid))
    conv.close()


def test_where_the_user_works_does_not_tell_what_they_work_as_nor_an_old_car_an_age(tiny_runner, tmp_path):
    """An employer answers "Which company do I work for?", not "What do I work as?"; "I sold the
    old car" tells no one's age (bench/longmem.py, train seeds: both were answered with invented
    values)."""
    from longchat.chat.session import ABSTAIN

    conv = SessionConversation(tiny_runner, "work", store=Store(tmp_path / "s.db"))
    conv.observe("I left my old job and joined Silverpine this week.", "Congratulations!", at=day(3, 2))
    conv.observe("I sold the old car and bought a Fiat.", "Nice.", at=day(3, 3))
    assert conv.send("What do I work as?", at=NOW) == ABSTAIN
    assert conv.send("How old is my daughter?", at=NOW) == ABSTAIN
    assert conv.send("Which company do I work for now?", at=NOW) != ABSTAIN
    conv.observe("I work as a librarian.", "Lovely.", at=day(3, 4))
    assert conv.send("What do I work as?", at=NOW) != ABSTAIN
    assert [f["key"] for f in conv.store.facts(conv.sid)][-1:] == ["job"]  # beside "work", not replacing it
    assert {f["key"] for f in conv.store.facts(conv.sid)} >= {"work", "job"}
    conv.close()


def test_a_favourite_must_be_told_whole(tiny_runner, tmp_path):
    """"What is my favourite food?" after "My favourite colour is turquoise" and "the food was
    amazing" was answered with an invented dish (bench/longmem.py, seeds 41-50)."""
    from longchat.chat.facts import asked_phrase
    from longchat.chat.session import ABSTAIN

    assert asked_phrase("What's my favorite food?") == asked_phrase("What is my favourite food?") == "favourite food"
    conv = SessionConversation(tiny_runner, "likes", store=Store(tmp_path / "s.db"))
    conv.observe("My favourite colour is turquoise.", "Lovely.", at=day(3, 2))
    conv.observe("I just got back from Jordan, the food was amazing.", "Nice!", at=day(3, 3))
    assert conv.send("What is my favourite food?", at=NOW) == ABSTAIN
    assert conv.send("What is my favourite colour?", at=NOW) != ABSTAIN
    conv.observe("Nothing beats goulash, it's my favorite food by far.", "Yum.", at=day(3, 4))
    assert conv.send("What is my favourite food?", at=NOW) != ABSTAIN
    conv.close()


def test_a_reply_that_uses_none_of_the_answering_memories_is_replaced_by_them(tiny_runner, tmp_path):
    """With the one right memory placed, the bundled model recited its instructions or named
    another value ("You use a Samsung Galaxy S22" after "My new phone is a Motorola"; bench
    train seeds). A reply that says nothing the answering memory says is replaced by that
    memory, quoted with its date, and only the checked reply is streamed. The tiny model here
    has random weights, so its reply never holds "cappuccino"."""
    from longchat.chat.session import grounded

    conv = SessionConversation(tiny_runner, "coffee", store=Store(tmp_path / "s.db"))
    conv.observe("My usual coffee is a flat white.", "Nice.", at=day(3, 2))
    conv.observe("I've switched my usual coffee to a cappuccino.", "Noted.", at=day(3, 9))
    notes: list[str] = []
    conv.note = notes.append
    streamed: list[str] = []
    reply = conv.send("What is my usual coffee order?", on_text=streamed.append, at=NOW)
    assert reply == ('You told me on 2026-03-09: "I\'ve switched my usual coffee to a cappuccino." '
                     'Before that, on 2026-03-02: "My usual coffee is a flat white."'), reply
    assert streamed == [reply] and any("replied with them instead" in n for n in notes)
    assert conv.store.messages(conv.sid)[-1].content == reply
    assert "quoted" in conv.recall_info()["reply"] and "the reply quoted them" in conv.memory_report()
    conv.close()
    # what counts as saying what the memory says: its number for "how many/much/old", its name
    party = "We had a party for my daughter on Saturday, she turned 7."
    assert not grounded("The party was on Saturday.", party, "How old is my daughter?")
    assert grounded("She is 7.", party, "How old is my daughter?")
    assert grounded("Your cat is Waffles.", "My cat Waffles knocked a glass off the table.", "What is my cat's name?")
    assert not grounded("You're a helpful assistant talking with one user, about their life.",
                        "That's life as a nurse I guess.", "What do I work as?",
                        "You are a helpful assistant talking with one user ... about their life.")


def test_a_later_change_said_as_an_event_answers_before_the_older_value(tiny_runner, tmp_path):
    """"I sold the old car and bought a Fiat" after "My car is a Kia": the change is something
    the user did, and holds no more of the asked words than the older fact, yet it is the answer
    to "What car do I drive now?". A later line that holds fewer than half of the asked words
    ("We got a new manager at work" for "How many people are on my team at work?") does not
    answer before it."""
    conv = SessionConversation(tiny_runner, "car", store=Store(tmp_path / "s.db"))
    conv.observe("My car is a Kia.", "Nice.", at=day(3, 2))
    conv.observe("My team at work is 5 people now.", "Cosy.", at=day(3, 3))
    conv.observe("I sold the old car and bought a Fiat.", "Congratulations!", at=day(3, 9))
    conv.observe("We got a new manager at work, her name is Ruben.", "Good luck.", at=day(3, 10))
    conv.now = NOW
    placed = conv.relevant("What car do I drive now?")
    assert "Fiat" in placed[0] and "Kia" in placed[1], placed
    reply = conv.send("What car do I drive now?", at=NOW)  # random weights: the memories answer
    assert reply.startswith('You told me on 2026-03-09: "I sold the old car and bought a Fiat."'), reply
    placed = conv.relevant("How many people are on my team at work?")
    assert "5 people" in placed[0], placed  # (the later line is placed after it, as a possible update)
    reply = conv.send("How many people are on my team at work?", at=NOW)
    assert reply == 'You told me on 2026-03-03: "My team at work is 5 people now."', reply
    conv.close()


def test_how_many_is_answered_with_the_memories_that_say_so_counted(tiny_runner, tmp_path):
    """The bundled model says 1 or 13 where three concerts were placed (bench/longmem.py,
    multi-session): a reply that does not give the count of the memories that name the thing
    asked about is replaced by them, counted and dated."""
    from longchat.chat.session import counted
    from longchat.chat.store import Hit

    conv = SessionConversation(tiny_runner, "gigs", store=Store(tmp_path / "s.db"))
    conv.observe("I went to a Velvet Owls concert on Saturday.", "Fun!", at=day(3, 2))
    conv.observe("I bought a new fern plant for the living room.", "Nice.", at=day(3, 3))
    conv.observe("I went to a Quiet Engines concert on Saturday.", "Great.", at=day(3, 9))
    conv.observe("Tell me one short fact about concerts.", "They are loud.", at=day(3, 10))
    reply = conv.send("How many concerts have I told you I went to?", at=NOW)
    assert reply.startswith("You told me about 2: on 2026-03-02") and "Quiet Engines" in reply, reply
    conv.close()
    said = [Hit(1, "I finished reading Walden on the train home.", 1.0, "fact"),
            Hit(2, "I saw Northern Lights at the cinema last night.", 2.0, "fact"),
            Hit(3, "Saw Paper Comets live last night.", 3.0, "fact"),
            Hit(4, "We went to the cinema to see Iron Tide.", 4.0, "fact"),
            Hit(5, "I bought a new orchid plant for the living room.", 5.0, "fact")]
    assert [h.id for h in counted("How many books have I told you I finished?", said)] == [1]
    assert [h.id for h in counted("How many films have I told you I saw at the cinema?", said)] == [2, 4]
    assert [h.id for h in counted("How many houseplants did I buy?", said)] == [5]
