"""The Bullet parser on Chatwoot's real bullet.log, and ``parse_bullet_block`` on Rails-log blocks.

Blocks marked "built" are written from flyerhzm/bullet's notification classes
(``lib/bullet/notification/*.rb``): title, ``"  #{base_class} => [#{associations.map(&:inspect).join(', ')}]"``,
``"  Add to your query: …"`` / ``"  Remove from your query: …"``, then ``Call stack`` and frames joined with ``"\\n  "``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence


from agent.events import Bullet, Event
from agent.parsers import FORMATS, sniff
from agent.parsers.bullet import BulletParser, looks_like_bullet_start, parse_bullet_block
from agent.sources.replay import iter_events
from agent.timeparse import to_iso

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "bullet"
from support import require  # noqa: E402


def feed(lines: Sequence[str]) -> List[Event]:
    parser = BulletParser("bullet.log")
    out: List[Event] = []
    for n, line in enumerate(lines, 1):
        out.extend(parser.feed(line, n))
    out.extend(parser.finish())
    return out


def chatwoot() -> List[Bullet]:
    return [e for e in iter_events(str(FIXTURES / "chatwoot_bullet.log")) if isinstance(e, Bullet)]


def test_every_chatwoot_entry_is_one_bullet_event():
    events = chatwoot()
    assert len(events) == 12
    assert [e.detection for e in events].count("n_plus_one") == 8
    assert [e.detection for e in events].count("unused_eager_loading") == 4


def test_n_plus_one_entry_fields():
    first = chatwoot()[0]
    assert (first.detection, first.model, first.associations) == ("n_plus_one", "Message", ("inbox",))
    assert first.request == "GET /api/v1/widget/messages"  # query string (with tokens) dropped
    assert first.call_stack[0].endswith("app/models/message.rb:152:in `content'") and len(first.call_stack) == 7
    assert first.line == 1 and to_iso(first.ts) == "2022-12-12T15:35:59.000Z"
    assert first.raw.startswith("2022-12-12 15:35:59[WARN] user: s.dastan\nGET /api/v1/widget/messages?website_token=")
    assert first.raw.endswith("switch_locale.rb:11:in `switch_locale'")


def test_unused_eager_loading_entry_with_empty_call_stack_ends_at_the_next_entry():
    avoid = [e for e in chatwoot() if e.detection == "unused_eager_loading"]
    assert [(e.model, e.associations) for e in avoid] == [
        ("Message", ("user",)), ("Attachment", ("file_attachment",)), ("Message", ("user",)), ("Attachment", ("file_attachment",)),
    ]
    assert avoid[0].call_stack == () and avoid[0].raw.count("\n") == 5 and avoid[0].line == 88


def test_entries_without_user_or_request_line():
    lines = [  # built: whoami empty and no request (e.g. a job); UniformNotifier's BulletLogger prefix
        "2024-05-01 12:00:00[WARN] USE eager loading detected",
        "  Post => [:author, :comments]",
        "  Add to your query: .includes([:author, :comments])",
        "Call stack",
        "  /app/app/jobs/digest_job.rb:12:in `block in perform'",
        "",
    ]
    (event,) = feed(lines)
    assert (event.model, event.associations, event.request) == ("Post", ("author", "comments"), "")
    assert event.call_stack == ("/app/app/jobs/digest_job.rb:12:in `block in perform'",)


def test_counter_cache_and_old_n_plus_one_titles():
    lines = [  # built: "Need Counter Cache" has no call stack; "N+1 Query detected" is Bullet < 5's title
        "2024-05-01 12:00:00[WARN] user: deploy",
        "GET /posts",
        "Need Counter Cache",
        "  Post => [:comments]",
        "",
        "2024-05-01 12:00:01[WARN] user: deploy",
        "GET /posts",
        "N+1 Query detected",
        "  Post => [:author]",
        "  Add to your finder: :includes => [:author]",
        "N+1 Query method call stack",
        "  /app/app/views/posts/index.html.erb:5:in `block in _app_views_posts_index_html_erb'",
        "",
    ]
    events = feed(lines)
    assert [(e.detection, e.model, e.associations) for e in events] == [
        ("counter_cache", "Post", ("comments",)), ("n_plus_one", "Post", ("author",)),
    ]
    assert events[1].call_stack == ("/app/app/views/posts/index.html.erb:5:in `block in _app_views_posts_index_html_erb'",)


def test_stray_lines_before_any_entry_are_unparsed():
    parser = BulletParser("bullet.log")
    parser.feed("something else", 1)
    parser.feed("", 2)
    assert parser.unparsed == 1


# -- blocks inside a Rails log (Bullet.rails_logger = true) ----------------------------------------------


RAILS_BLOCK = [  # built: UniformNotifier::RailsLogger warns data.values.compact.join("\n"); the Rails prefix is cut by the caller
    "user: root",
    "GET /posts?page=2",
    "USE eager loading detected",
    "  Post => [:author]",
    "  Add to your query: .includes([:author])",
    "Call stack",
    "  /app/app/views/posts/index.html.erb:5:in `block in _app_views_posts_index_html_erb___1'",
    "  /app/app/controllers/posts_controller.rb:7:in `index'",
    "",
]


def test_parse_bullet_block_reads_a_rails_logger_block():
    event = parse_bullet_block(RAILS_BLOCK, ts=1714564800.0, source="production.log", line=42)
    assert isinstance(event, Bullet)
    assert (event.detection, event.model, event.associations, event.request) == ("n_plus_one", "Post", ("author",), "GET /posts")
    assert (event.ts, event.source, event.line) == (1714564800.0, "production.log", 42)
    assert len(event.call_stack) == 2 and event.raw == "\n".join(RAILS_BLOCK[:-1])


def test_parse_bullet_block_returns_none_without_a_title():
    assert parse_bullet_block(["user: root", "GET /posts", "  Post => [:author]"]) is None
    assert parse_bullet_block([]) is None


def test_looks_like_bullet_start():
    assert looks_like_bullet_start("user: root") and looks_like_bullet_start("AVOID eager loading detected")
    assert not looks_like_bullet_start('Started GET "/posts" for 127.0.0.1')


# -- sniffing ---------------------------------------------------------------------------------------------


def test_bullet_log_is_sniffed_as_bullet():
    lines = (FIXTURES / "chatwoot_bullet.log").read_text().splitlines()
    parser, score = sniff([l for l in lines[:64] if l.strip()])
    assert parser is BulletParser and score == 1.0


def test_indented_paths_alone_do_not_make_a_bullet_log():
    assert BulletParser.sniff(["  /app/app/models/post.rb:3:in `x'", "  /app/app/models/post.rb:4:in `y'"]) == 0.0



def test_registered_in_formats():
    assert BulletParser in FORMATS


# -- the reference app's real Rails 6.1 log with Bullet 6.1 warnings (fixtures/logs/e2e) ----------------

E2E_LOG = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "e2e" / "info" / "production.log"


def first_rails_logged_block(lines: Sequence[str]) -> List[str]:
    """The first WARN record whose message starts a Bullet block, prefix and tag cut, with its bare lines."""
    for i, line in enumerate(lines):
        if " WARN -- : " in line:
            message = line.split(" WARN -- : ", 1)[1]
            if message.startswith("["):
                message = message.split("] ", 1)[1]
            if looks_like_bullet_start(message):
                block = [message]
                for nxt in lines[i + 1:]:
                    if nxt[:3] in ("I, ", "W, ", "D, ", "E, ", "F, "):
                        break
                    block.append(nxt)
                return block
    return []


def test_parse_bullet_block_on_a_real_rails_logged_warning():
    require(E2E_LOG)
    block = first_rails_logged_block(E2E_LOG.read_text().splitlines())
    assert block[:3] == ["user: root", "GET /posts", "USE eager loading detected"]
    event = parse_bullet_block(block)
    assert event is not None
    assert (event.detection, event.model, event.associations, event.request) == ("n_plus_one", "Post", ("author",), "GET /posts")
    assert len(event.call_stack) == 3 and event.call_stack[0].endswith("in `block in index'")
