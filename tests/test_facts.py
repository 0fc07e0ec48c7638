"""Facts the user states become session memory, by the system (chat/facts.py, Store.add_fact),
and recall weighs who said what.

The weighting tests put an assistant reply into the store directly, as the bundled model's
confabulations look; they test longchat's ranking, not any model. The real model's end-to-end
check of a fact across a restart is tests/test_sessions.py's.
"""

from __future__ import annotations

import io
import json
import sqlite3

import pytest

from longchat.api import open_runner
from longchat.chat.facts import asks_about_user, extract, supported
from longchat.chat.session import ABSTAIN, SessionConversation
from longchat.chat.store import MIGRATIONS, Store
from longchat.db import statements as _statements
from longchat.cli import main


@pytest.mark.parametrize("said, key, text", [
    ("My sister's name is Alma.", "sister's name", "My sister's name is Alma."),
    ("Actually, my sister is called Maria.", "sister's name", "My sister is called Maria."),
    ("Please remember that my locker code is 4417.", "locker code", "My locker code is 4417."),
    ("I work as a pharmacist.", "job", "I work as a pharmacist."),
    ("Hi! I was born in Lisbon. Nice weather today.", "born", "I was born in Lisbon."),
    ("Remember: the spare key is under the mat.", "spare key under", "The spare key is under the mat."),
    ("Can you remember that my train leaves at 6?", "train leaves 6", "My train leaves at 6"),
    ("My doctor is Dr. Okafor.", "doctor", "My doctor is Dr. Okafor."),  # one sentence, not two
    # facts and changes said in passing (issue 43, train seeds of bench/longmem.py)
    ("I had to skip dessert because of my sesame allergy.", "allergy sesame",
     "I had to skip dessert because of my sesame allergy."),
    ("I'm learning Finnish these days.", "learn finnish", "I'm learning Finnish these days."),
    ("Declan took over as my manager this week.", "manager's name", "Declan took over as my manager this week."),
    ("I left my old job and joined Silverpine.", "work", "I left my old job and joined Silverpine."),
    ("I've switched my usual coffee to a cappuccino.", "coffee", "I've switched my usual coffee to a cappuccino."),
    ("Now I'm reading Middlemarch, it's hard to put down.", "reading", "Now I'm reading Middlemarch."),
])
def test_statements_of_fact_are_extracted_in_the_users_words(said, key, text):
    assert [(f.key, f.text) for f in extract(said)] == [(key, text)]


@pytest.mark.parametrize("said", [
    "What is my sister's name?", "Tell me one short fact about the ocean.", "Why do people like chess?",
    "Hello there!", "Thanks, that is helpful.", "I think so.", "Write a poem about my cat.",
])
def test_questions_requests_and_chit_chat_are_not_facts(said):
    assert extract(said) == []


def test_a_fact_must_be_supported_by_the_users_own_words():
    assert supported("My sister is called Alma.", "oh, my sister is called Alma by everyone")
    assert not supported("My sister is called Alma.", "my sister is called Anna")  # a different name
    assert not supported("The bike is a reference to The Legend of Zelda.", "my bike is teal")  # an invention
    assert not supported("", "anything")


def test_a_corrected_fact_replaces_the_old_one(tmp_path):
    store = Store(tmp_path / "s.db")
    sid = store.session_id("a", create=True)
    assert store.add_fact(sid, "sister's name", "My sister's name is Alma.", 1) == (1, None)
    assert store.add_fact(sid, "work", "I work as a pharmacist.", 2) == (2, None)
    assert store.add_fact(sid, "work", "I work as a pharmacist.", 3) is None  # said again: nothing changes
    fid, replaced = store.add_fact(sid, "sister's name", "My sister is called Maria.", 4)
    assert replaced == "My sister's name is Alma." and fid == 3
    assert [(f["content"], f["source"]) for f in store.facts(sid)] == [("I work as a pharmacist.", 2),
                                                                        ("My sister is called Maria.", 4)]
    assert store.forget_fact(sid, fid) == "My sister is called Maria."
    assert [f["content"] for f in store.facts(sid)] == ["I work as a pharmacist."]
    store.add_fact(sid, "dog's name", "My dog is called Rex.", 5)
    assert store.facts(sid)[-1]["id"] == 4  # ids never come back after /forget


@pytest.fixture
def tiny_runner(home, tiny_chat_model):
    return open_runner("full", str(tiny_chat_model), overrides=["generation.max_new_tokens=8"])


def test_recall_puts_the_users_fact_first_and_never_the_assistants_confabulation(tiny_runner, tmp_path):
    notes = []
    conv = SessionConversation(tiny_runner, "zelda", store=Store(tmp_path / "s.db"), note=notes.append)
    uid = conv.store.add_message(conv.sid, "user", "Please remember: my bike is teal.")
    assert conv.learn("Please remember: my bike is teal.", uid) == ["noted fact #1: My bike is teal."]
    conv.store.add_message(conv.sid, "assistant", "In the context of the anime, the bike is a reference to the "
                           "bike in The Legend of Zelda, and the bike is green.")
    for i in range(8):
        conv.store.add_message(conv.sid, "user", f"Tell me about trains, part {i}.")
        conv.store.add_message(conv.sid, "assistant", f"Trains run on rails ({i}).")
    found = conv.relevant("What colour is my bike?")
    assert found[0].startswith("you told me (") and found[0].endswith("My bike is teal.")
    assert not any("Zelda" in line for line in found)
    assert notes == ["noted fact #1: My bike is teal."]
    conv.close()
    again = SessionConversation(tiny_runner, "zelda", store=Store(tmp_path / "s.db"))  # after a restart
    assert again.relevant("What colour is my bike?")[0].endswith("My bike is teal.")
    again.close()


def test_an_old_session_store_gains_facts_without_losing_anything(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _statements(MIGRATIONS[0]):  # the store as the first release wrote it
        db.execute(statement)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO sessions(name, created, updated) VALUES ('old', 1, 1)")
    db.execute("INSERT INTO core_blocks VALUES (1, 'human', 'Name: Ana', 2000)")
    db.execute("INSERT INTO messages(session_id, role, content, created) VALUES (1, 'user', 'my cat is grey', 1)")
    db.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    sid = store.session_id("old")
    assert [m.content for m in store.messages(sid)] == ["my cat is grey"]
    assert store.search_messages(sid, "cat")[1] == 1 and store.facts(sid) == []
    store.add_fact(sid, "cat", "My cat is grey.", 1)
    assert [f["content"] for f in store.facts(sid)] == ["My cat is grey."] and store.core(sid)["human"][0] == "Name: Ana"


def test_piped_chat_notes_facts_and_the_commands_list_and_forget_them(home, tiny_chat_model, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("My dog is called Biscuit.\nActually, my dog is called Rex.\n"
                                                 "/facts\n/forget 2\n/facts\n"))
    assert main(["chat", "--session", "pets", "-m", str(tiny_chat_model), "-n", "4"]) == 0
    err = capsys.readouterr().err
    assert "noted fact #1: My dog is called Biscuit." in err
    assert "noted fact #2: My dog is called Rex. (replaces: My dog is called Biscuit.)" in err
    assert "#2 My dog is called Rex.  (from message #3" in err
    assert "forgot fact #2: My dog is called Rex." in err and "no facts kept yet" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("I live in Porto.\n"))
    assert main(["chat", "--session", "pets", "-m", str(tiny_chat_model), "-n", "4"]) == 0
    capsys.readouterr()
    assert main(["sessions", "facts", "pets", "--json"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert [(f["key"], f["content"]) for f in kept] == [("live", "I live in Porto.")]
    assert main(["sessions", "facts", "nope"]) != 0


# Facts said in passing, written before chat/facts.py's clause rules were tuned and never tuned
# on (issue 43): (what the user said, a word of the fact that must be in the captured text).
# docs/sessions.md ("Capture") reports the figure; the target is 8 of 10.
HELD_OUT = [
    ("Sorry I'm late, I had to drop my daughter Aino at ballet.", "Aino"),
    ("It's been hectic since we relocated to Utrecht in the spring.", "Utrecht"),
    ("Could you leave out the shrimp? I have a shellfish allergy.", "shellfish"),
    ("Our cat Miso knocked my coffee over this morning.", "Miso"),
    ("I don't eat meat, so something vegetarian would be great.", "meat"),
    ("My husband Tomas is a nurse, so he works nights a lot.", "Tomas"),
    ("I've been working as a bus driver for ten years now, so mornings are early.", "driver"),
    ("We've lived in Galway since 2019 and still love the rain.", "Galway"),
    ("Ugh, I can't have dairy, it makes me sick.", "dairy"),
    ("I just started a new job at Nokia last month, so things are busy.", "Nokia"),
    ("Our son Leo turned six yesterday and we had a party.", "Leo"),
    ("I've been vegan for three years.", "vegan"),
]
HELD_OUT_NEGATIVE = [
    "If we ever move to Lisbon I'll learn Portuguese.",
    "Does your dog like walks?",
    "Her brother lives in Oslo now.",
    "Tell me what to cook for someone who is vegan.",
    "Imagine I worked as a pilot, what would my day be like?",
]


# Facts said in passing (issue 43), the set chat/facts.py's clause rules were tuned on:
# (what the user said, the key, a word of the fact that must be in the captured text).
PASSING = [
    # said of someone the clause before brought in, or pointing back at a place; changed values
    ('We had a party for my daughter on Saturday, she turned 15.', "daughter's age", 'turned 15'),
    ('It snowed today, which reminds me of Utrecht, where I was born.', 'born', 'Utrecht, where I was born'),
    ("Long shift today, that's life as a librarian I guess.", 'job', 'librarian'),
    ('After the reorganisation my team has 4 people.', 'team has', '4 people'),
    ('The landlord raised my rent to 660 euros a month.', 'rent', '660'),
    ('I cut my running back to 40 kilometres a week.', 'running', '40 kilometres'),
    # events: what the user did, with or without "I" (issue 43: counting and "when did I")
    ('We climbed Triglav at the weekend, my legs are sore.', 'did climbed triglav weekend', 'Triglav'),
    ('Finally finished Jane Eyre last night.', 'did finished jane eyre last night', 'Jane Eyre'),
    ('Had dinner at Mama Rosa, a new place near the station.', 'did dinner mama rosa', 'Mama Rosa'),
    ("I've taken up tennis instead, my knees prefer it.", 'did taken up tennis instead', 'tennis'),
    ("Last month I was in Iceland for a friend's wedding.", "did iceland friend's wedding", 'Iceland'),
    ('I got my driving licence this morning!', 'did got driving licence morning', 'licence'),
    # a name given in the next clause to someone the clause before brought in
    ('We got a new manager at work, her name is Ruben.', "manager's name", 'Ruben'),
    ('We adopted a puppy, his name is Rex.', "puppy's name", 'Rex'),
    ('We had a long week because we finally moved to Tampere last Friday.', 'live', 'Tampere'),
    ('My son Eero started school on Monday, he loves it.', 'son eero', 'Eero'),
    ("I'll skip the cake, I'm allergic to walnuts.", 'allergy walnut', 'walnuts'),
    ('We live in Cork, so the weather is always grey.', 'live', 'Cork'),
    ('Our dog is called Pippa.', "dog's name", 'Pippa'),
    ("I can't eat gluten, so pasta is out.", 'diet gluten', 'gluten'),
    ("I don't drink coffee, but tea is fine.", 'diet coffee', 'coffee'),
    ("Just got back from my shift, I work as a nurse at the children's hospital.", 'job', 'nurse'),
    ('Honestly I love hiking, we go every weekend.', 'likes hiking', 'hiking'),
    ('My wife Sara thinks I should rest more.', 'wife sara', 'Sara'),
    ("We've been living in Lyon for five years now.", 'live', 'Lyon'),
    ("I'm vegetarian, so no ham for me.", 'diet', 'vegetarian'),
    ('I just turned 40, feeling old!', 'age', '40'),
    ('Busy day, my daughter Lumi had her first swimming lesson.', 'daughter lumi', 'Lumi'),
    ('We adopted a cat named Mochi last month.', 'cat mochi', 'Mochi'),
    ('Sorry for the delay, I started a new job at Siemens this week.', 'work', 'Siemens'),
    ("I'm originally from Porto but I grew up in Lisbon.", 'from', 'Porto'),
    ("My brother's name is Jon, by the way.", "brother's name", 'Jon'),
    ('Ugh, I hate mornings.', 'likes morning', 'mornings'),
    ('I play the cello in a small orchestra.', 'play cello small', 'cello'),
    ("We got married in 2015, so it's our tenth anniversary soon.", 'married', '2015'),
    ('I have two kids, so evenings are chaotic.', 'two kids', 'kids'),
    ('Our house is near the river, it floods sometimes.', 'house', 'river'),
    ("Since I'm lactose intolerant, I'll pass on the ice cream.", 'intolerant lactose', 'lactose'),
    ("I live in Seville and it's boiling today.", 'live', 'Seville'),
    ('My birthday is on June 3rd, so plan accordingly.', 'birthday', 'June'),
    ("I'm a teacher, so summers are free.", 'am a', 'teacher'),
    ("I've been working at the library for a decade.", 'work', 'library'),
    ('We went to Crete on holiday last summer and it was lovely.', 'trip crete', 'Crete'),
    ('By the way, my partner Alex is allergic to cats.', 'partner alex', 'Alex'),
    ("I don't eat pork, just so you know.", 'diet pork', 'pork'),
    ('My mum lives in Leeds, I visit her every month.', "mum's home", 'Leeds'),
    ("We're based in Helsinki, so meetings are early for us.", 'live', 'Helsinki'),
    ('Our kids Aada and Ilmari are at camp this week.', 'kids aada and ilmari', 'Aada'),
    ('I speak Finnish at home but English at work.', 'speak finnish home', 'Finnish'),
    ("I'm 34 and I still can't cook.", 'age', '34'),
    ('I live in Cork, Ireland, and the rain never stops.', 'live', 'Ireland'),
]
# Not facts: questions, hypotheticals and plans, commands, other people, talk.
NOT_FACTS = [
    'My car has a dent.',
    'We had a long week.',
    'I tried your code and it failed.',
    'We talked about this before.',
    'Fixed it, thanks.',
    'Picked it up yesterday.',
    'Where do I live?',
    "What is my brother's name?",
    'If I lived in Paris, I would eat croissants every day.',
    'Imagine I worked as a pilot.',
    "My friend said she's allergic to peanuts.",
    'He lives in Oslo with his wife.',
    'Tell me about living in Tampere.',
    'Write a story about my dog.',
    'Do you think I should move to Berlin?',
    'We might move to Lisbon next year.',
    "I'm thinking about moving to Spain.",
    'Should I eat more vegetables?',
    'I would love to live by the sea.',
    "Let's say I live in Tokyo, what's the best way to commute?",
    'I have a question about taxes.',
    'I have to go now.',
    "I'm a bit tired today.",
    'Thanks, I love it!',
    'Her husband works as a pilot.',
    'They moved to Canada last year.',
    'I wish I lived in Italy.',
    'What if we moved to Tampere?',
    'Is my dog allowed on the train?',
    "Explain how to cook for someone who can't eat gluten.",
    "I'd drink coffee if it didn't keep me up.",
    'Do you live in the cloud?',
    'Hello, how are you?',
    'Can you help me plan a trip to Rome?',
    "What's the capital of France?",
    'When did I tell you about my sister?',
    'I love that idea!',
    'My question is about Python.',
    'I like your answer.',
    "I don't know.",
    "Okay, I'm a little confused.",
    "I'm 100% sure about that.",
    "I'm 5 minutes away.",
]


def captured(said: str, word: str) -> bool:
    return any(word.lower() in f.text.lower() for f in extract(said))


@pytest.mark.parametrize("said, key, word", PASSING)
def test_facts_said_in_passing_are_captured_in_the_users_words(said, key, word):
    found = extract(said)
    assert any(word.lower() in f.text.lower() and f.key == key for f in found), found
    assert all(supported(f.text, said) and f.text.rstrip(".!").lower() in said.lower() for f in found)


@pytest.mark.parametrize("said", NOT_FACTS + HELD_OUT_NEGATIVE)
def test_questions_hypotheticals_commands_and_other_people_are_not_captured(said):
    assert extract(said) == []


def test_held_out_facts_said_in_passing_meet_the_target():
    """The figure docs/sessions.md reports ("Capture"): 12/12 when it was written; the target is 8 of 10."""
    hits = sum(captured(said, word) for said, word in HELD_OUT)
    assert hits * 10 >= 8 * len(HELD_OUT), hits


def test_moving_and_living_share_a_key_so_the_later_statement_replaces_the_earlier():
    (cork,) = extract("I live in Cork.")
    (tampere,) = extract("We had a long week because we finally moved to Tampere last Friday.")
    assert cork.key == tampere.key == "live" and tampere.text == "We finally moved to Tampere last Friday."
    assert extract("I don't drink coffee.")[0].key == extract("Honestly, I drink coffee every day now.")[0].key


DAY = 86400.0
T0 = 1767225600.0  # 2026-01-01 UTC


def test_a_newer_statement_replaces_the_older_for_answers_and_the_older_stays_with_its_dates(tiny_runner, tmp_path):
    conv = SessionConversation(tiny_runner, "moves", store=Store(tmp_path / "s.db"))
    assert conv.observe("I live in Cork.", "Cork is lovely.", at=T0) == ["noted fact #1: I live in Cork."]
    for i in range(6):
        conv.observe(f"Tell me about trains, part {i}.", f"Trains run on rails ({i}).", at=T0 + DAY * (2 + i))
    learned = conv.observe("We had a long week because we finally moved to Tampere last Friday.", "Congratulations!",
                           at=T0 + 59 * DAY)
    assert learned == ["noted fact #2: We finally moved to Tampere last Friday. (replaces: I live in Cork.)"]
    store, sid = conv.store, conv.sid
    assert [f["content"] for f in store.facts(sid)] == ["We finally moved to Tampere last Friday."]
    (cork,) = store.fact_history(sid, "live")
    assert (cork["content"], cork["created"], cork["until"], cork["replaced_by"]) == \
        ("I live in Cork.", T0, T0 + 59 * DAY, 2)
    found = conv.relevant("Where do I live?")
    assert found[0] == (f"you told me ({_day(T0 + 59 * DAY)}): We finally moved to Tampere last Friday. "
                        f'(earlier: "I live in Cork.", until {_day(T0 + 59 * DAY)})')
    assert not any(line.startswith("you said") and "Cork" in line for line in found)  # said once, in the line above
    assert [h.content for h in store.recall(sid, "fact", "Cork")] == []  # answers use the current fact only
    conv.close()


def test_events_are_facts_of_their_own_and_what_the_user_is_comes_before_what_they_did(tiny_runner, tmp_path):
    conv = SessionConversation(tiny_runner, "events", store=Store(tmp_path / "s.db"))
    conv.observe("I live in Cork.", "Nice.", at=T0)
    conv.observe("I bought Catan, we played it all evening.", "Fun!", at=T0 + DAY)
    conv.observe("Picked up a copy of Azul at the game shop.", "Fun!", at=T0 + 2 * DAY)
    conv.observe("Saw Paper Comets live last night, what a show.", "Great!", at=T0 + 3 * DAY)
    facts = [f["content"] for f in conv.store.facts(conv.sid)]
    assert facts == ["I live in Cork.", "I bought Catan.", "Picked up a copy of Azul at the game shop.",
                     "Saw Paper Comets live last night."]  # two games bought are two facts: none replaced
    found = conv.relevant("Where do I live now?")
    assert len(found) == 1 and found[0].endswith("I live in Cork.")  # "live" in the concert does not count
    assert any("Paper Comets" in line for line in conv.relevant("When did I see Paper Comets?"))
    conv.close()


def test_sessions_facts_shows_the_history(home, tiny_chat_model, capsys):
    store = Store()
    sid = store.session_id("moves", create=True)
    store.add_fact(sid, "live", "I live in Cork.", None, at=T0)
    store.add_fact(sid, "live", "We moved to Tampere.", None, at=T0 + 59 * DAY)
    store.add_fact(sid, "work", "I work as a nurse.", None, at=T0 + DAY)
    store.close()
    assert main(["sessions", "facts", "moves"]) == 0
    out = capsys.readouterr().out
    assert f"    was: I live in Cork. ({_day(T0)} to {_day(T0 + 59 * DAY)})" in out.splitlines()
    assert main(["sessions", "facts", "moves", "--json"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert [(f["content"], [h["content"] for h in f["history"]]) for f in kept] == [
        ("We moved to Tampere.", ["I live in Cork."]), ("I work as a nurse.", [])]
    store = Store()
    assert store.forget_fact(sid, 2) == "We moved to Tampere."  # forgetting a fact forgets its history too
    assert store.fact_history(sid, "live") == [] and [f["id"] for f in store.facts(sid)] == [3]


def _day(ts: float) -> str:
    from longchat.chat.store import day

    return day(ts)


@pytest.mark.parametrize("said, about", [
    ("What is my brother's name?", True), ("Where did I go on holiday?", True), ("What's my dog called?", True),
    ("How old am I?", True), ("Do I have any pets?", True), ("Can you tell me my name?", True),
    ("What is the capital of France?", False), ("How do I fix my bike?", False), ("What should I cook tonight?", False),
    ("Why is my code slow?", False), ("Is my dog allowed on the train?", False), ("Tell me a joke about my cat.", False),
    ("Can you remember that my train leaves at 6?", False), ("I live in Cork.", False),
    ("What is my best friend's name?", True), ("What is the best way to learn Finnish?", False),
])
def test_questions_about_the_user_are_told_from_requests_and_questions_about_the_world(said, about):
    assert asks_about_user(said) is about


HISTORY = [("My sister's name is Alma.", "That's a lovely name."),
           ("I work as a pharmacist at the town hospital.", "That sounds like rewarding work."),
           ("We live in Rotterdam, it rains a lot.", "Rotterdam is a great city."),
           ("Our dog is called Biscuit.", "Biscuit is a cute name for a dog."),
           ("I'll skip dessert, I'm allergic to peanuts.", "Good to know."),
           ("Tell me one short fact about owls.", "Owls can turn their heads very far.")]
NEVER_TOLD = ["What is my brother's name?", "Where did I go on holiday?", "What's my cat called?",
              "What is my favourite film?", "How old am I?"]
TOLD = [("What is my sister's name?", "alma"), ("Where do I live?", "rotterdam"), ("What's my dog called?", "biscuit"),
        ("What am I allergic to?", "peanut"), ("What is my job?", "pharmacist")]


def test_the_real_model_abstains_on_what_it_was_never_told_and_answers_what_it_was(home, reuse_model):
    """Issue 43 on the bundled model: the session is built with `observe` (no generation), then
    never-told questions get `ABSTAIN` without the model, and told ones the model's answer."""
    runner = open_runner("auto", overrides=["generation.max_new_tokens=12"])
    conv = SessionConversation(runner, "abstain", store=Store())
    for i, (said, reply) in enumerate(HISTORY):
        conv.observe(said, reply, at=T0 + i * DAY)
    streamed: list[str] = []
    abstained = [conv.send(q, on_text=streamed.append, at=T0 + 30 * DAY) == ABSTAIN for q in NEVER_TOLD]
    assert sum(abstained) >= 4 and streamed.count(ABSTAIN) == sum(abstained)
    replies = [conv.send(q, at=T0 + 31 * DAY) for q, _ in TOLD]
    assert ABSTAIN not in replies
    # Read without the window, the bundled model sometimes echoes the system message ("You're a
    # helpful assistant ..."); such a reply is replaced by the memory that answers (`grounded`).
    assert all(word in reply.lower() for (_, word), reply in zip(TOLD, replies)), replies
    assert conv.send("What is the capital of France?") != ABSTAIN  # not about the user: the model answers
    kept = [m.content for m in conv.store.messages(conv.sid) if m.role == "assistant"]
    assert kept.count(ABSTAIN) == sum(abstained)  # stored as the replies, left out of the window
    assert all(m["content"] != ABSTAIN for m in conv._history(None))
    conv.close()


def test_a_several_word_relation_must_be_said_whole_to_count_as_told(tmp_path):
    """"What is my best friend's name?" after "a friend's wedding" was answered with an invented
    name (bench/longmem.py, train seeds): the relation is asked for whole ("best friend")."""
    from longchat.chat.facts import asked_phrase

    assert asked_phrase("What is my best friend's name?") == "best friend"
    assert asked_phrase("What's my guinea pig called?") == "guinea pig"
    assert asked_phrase("What is my little brother called?") is None  # a brother: one word
    assert asked_phrase("What is my sister's name?") is None
