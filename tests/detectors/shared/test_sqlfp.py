from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agent.sources.replay import iter_events
from detectors.shared.sqlfp import SqlFingerprinter, parse_binds, parse_tags, shape

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "logs" / "n_plus_one"

AUTHOR_BY_ID = 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2'


def test_placeholders_and_literals_share_one_fingerprint():
    forms = [
        AUTHOR_BY_ID,
        'SELECT "authors".* FROM "authors" WHERE "authors"."id" = ? LIMIT ?',
        'SELECT "authors".* FROM "authors" WHERE "authors"."id" = 17 LIMIT 1',
        "SELECT `authors`.* FROM `authors` WHERE `authors`.`id` = 17 LIMIT 1",
        'select "authors".*   from "authors"\n WHERE "authors"."id" = :id LIMIT :limit;',
    ]
    assert len({shape(f).fingerprint for f in forms}) == 1


def test_strings_with_escaped_quotes_are_one_literal():
    a = shape("SELECT * FROM users WHERE email = 'o''brien@example.com' AND note = 'it\\'s'")
    b = shape("SELECT * FROM users WHERE email = 'x' AND note = 'y'")
    assert a.fingerprint == b.fingerprint
    assert a.normalized == "SELECT * FROM users WHERE email = ? AND note = ?"


def test_booleans_are_literals_but_null_comparisons_stay():
    assert shape("SELECT * FROM t WHERE a = TRUE").fingerprint == shape("SELECT * FROM t WHERE a = false").fingerprint
    assert shape("SELECT * FROM t WHERE a IS NULL").fingerprint != shape("SELECT * FROM t WHERE a = 1").fingerprint
    assert "IS NULL" in shape("SELECT * FROM t WHERE a IS NULL").normalized


def test_digits_inside_identifiers_are_kept():
    assert shape("SELECT * FROM users_2009 WHERE id = 1").fingerprint != shape("SELECT * FROM users_2010 WHERE id = 1").fingerprint


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN ($1, $2, $3)',
        'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)',
        'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN ($1 /*, ... */)',
        'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN (?)',
    ],
)
def test_in_lists_of_any_length_collapse_to_one_shape(sql):
    assert shape(sql).normalized == 'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN (?)'


def test_in_list_length_is_reported_for_batched_load_detection():
    assert shape('SELECT "a".* FROM "a" WHERE "a"."id" IN ($1, $2, $3)').in_list_max == 3
    assert shape("SELECT * FROM a WHERE id = ANY(ARRAY[1,2,3,4]::bigint[])").in_list_max == 4
    assert shape(AUTHOR_BY_ID).in_list_max == 0


def test_multi_row_values_collapse():
    one = shape('INSERT INTO "posts" ("title") VALUES ($1) RETURNING "id"')
    many = shape('INSERT INTO "posts" ("title") VALUES ($1), ($2), ($3) RETURNING "id"')
    assert one.fingerprint == many.fingerprint
    assert one.table == "posts" and one.kind == "write"


def test_limit_and_offset_are_abstracted_but_a_literal_limit_is_reported():
    a = shape('SELECT "posts".* FROM "posts" ORDER BY "posts"."id" LIMIT 1000 OFFSET 2000')
    b = shape('SELECT "posts".* FROM "posts" ORDER BY "posts"."id" LIMIT 30 OFFSET 0')
    assert a.fingerprint == b.fingerprint
    assert a.normalized.endswith("LIMIT ? OFFSET ?")
    assert (a.limit, b.limit) == (1000, 30)


def test_savepoint_names_are_abstracted():
    assert shape("SAVEPOINT active_record_1").fingerprint == shape("SAVEPOINT active_record_2").fingerprint
    assert shape("SAVEPOINT active_record_1").kind == "transaction"


def test_query_log_comments_are_stripped_and_returned_as_tags():
    legacy = shape('SELECT "posts".* FROM "posts" /*application:Blog,controller:posts,action:index*/')
    commenter = shape("SELECT \"posts\".* FROM \"posts\" /*action='index',application='Blog',controller='posts'*/")
    bare = shape('SELECT "posts".* FROM "posts"')
    assert legacy.fingerprint == commenter.fingerprint == bare.fingerprint
    assert dict(legacy.tags) == {"application": "Blog", "controller": "posts", "action": "index"}
    assert dict(commenter.tags) == {"action": "index", "application": "Blog", "controller": "posts"}
    assert legacy.normalized == 'SELECT "posts".* FROM "posts"'


def test_sqlcommenter_values_are_url_decoded_and_non_tag_comments_give_no_tags():
    assert parse_tags("controller='admin%2Fposts',job='Hard'") == {"controller": "admin/posts", "job": "Hard"}
    assert dict(shape("SELECT /*+ SeqScan(t) */ * FROM t").tags) == {}


def test_main_table_and_key_lookup():
    s = shape(AUTHOR_BY_ID)
    assert (s.table, s.kind, s.key_lookup, s.key_column) == ("authors", "load", True, "id")
    s = shape('SELECT "comments".* FROM "comments" WHERE "comments"."post_id" = $1')
    assert (s.table, s.key_lookup, s.key_column) == ("comments", True, "post_id")
    s = shape('SELECT "users".* FROM "users" WHERE "users"."email" = $1 LIMIT $2')
    assert not s.key_lookup
    s = shape('UPDATE "users" SET "name" = $1 WHERE "users"."id" = $2')
    assert (s.table, s.kind, s.operation) == ("users", "write", "UPDATE")
    assert shape('DELETE FROM "sessions" WHERE "sessions"."id" = $1').table == "sessions"
    assert shape('SELECT "t".* FROM "public"."t"').table == "t"


def test_counts_and_exists_checks_are_their_own_kinds():
    assert shape('SELECT COUNT(*) FROM "comments" WHERE "comments"."post_id" = $1').kind == "count"
    assert shape('SELECT 1 AS one FROM "comments" WHERE "comments"."post_id" = $1 LIMIT $2').kind == "exists"


def test_ansi_colour_codes_do_not_change_the_fingerprint():
    coloured = '\x1b[1m\x1b[34mSELECT "users".* FROM "users" WHERE "users"."id" = ? LIMIT ?\x1b[0m'
    assert shape(coloured).fingerprint == shape('SELECT "users".* FROM "users" WHERE "users"."id" = ? LIMIT ?').fingerprint


def test_real_debug_log_statements_group_as_expected():
    sqls = [e for e in iter_events(str(FIXTURES / "simple.log")) if e.kind == "sql"]
    assert len(sqls) == 61
    by_fp = Counter(shape(e.sql).fingerprint for e in sqls)
    attachment = next(e for e in sqls if e.name == "ActiveStorage::Attachment Load")
    user_by_id = next(e for e in sqls if e.name == "User Load" and '"users"."id"' in e.sql)
    user_by_email = next(e for e in sqls if e.name == "User Load" and '"users"."email"' in e.sql)
    assert by_fp[shape(attachment.sql).fingerprint] == 6  # 4 in GET /users/1, 1 in each POST /microposts
    assert shape(user_by_id.sql).fingerprint != shape(user_by_email.sql).fingerprint
    s = shape(attachment.sql)
    assert (s.table, s.key_lookup, s.key_column) == ("active_storage_attachments", True, "record_id")


def test_cache_is_bounded_and_literal_variants_share_a_skeleton():
    fp = SqlFingerprinter(max_entries=8)
    first = fp.shape("SELECT * FROM t WHERE id = 1 LIMIT 5")
    for i in range(100):
        fp.shape(f"SELECT * FROM t WHERE id = {i} LIMIT 5")
    assert fp.cache_info().currsize <= 8
    assert len(fp._by_skeleton) <= 8
    assert fp.shape("SELECT * FROM t WHERE id = 12345 LIMIT 5") == first
    assert fp.shape("SELECT * FROM t WHERE id = 1 LIMIT 500").limit == 500  # LIMIT n is part of the skeleton


def test_parse_binds_reads_rails_inspected_arrays():
    assert parse_binds('[["record_id", 4], ["record_type", "Micropost"], ["name", "image"], ["LIMIT", 1]]') == [
        ("record_id", "4"), ("record_type", "Micropost"), ("name", "image"), ("LIMIT", "1"),
    ]
    assert parse_binds("[[nil, 3]]") == [("", "3")]
    assert parse_binds("") == []
