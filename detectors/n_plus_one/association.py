"""Name the association behind a repeated query (for the N+1 detector).

``infer_association`` reads the shape of the repeating statement and of the statement
that preceded the run (the "source" query that loaded the parent rows, as in Sentry's
detector):

    source  SELECT "posts".* FROM "posts" …
    repeat  SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2
            -> belongs_to: Post => :author          fix: Post.includes(:author)
    repeat  SELECT "comments".* FROM "comments" WHERE "comments"."post_id" = $1
            -> has_many:   Post => :comments        fix: Post.includes(:comments)
    repeat  SELECT COUNT(*) FROM "comments" WHERE "comments"."post_id" = $1
            -> counter:    Post => :comments        fix: counter_cache or preload + size
    repeat  … "active_storage_attachments"."record_id" = ? AND "record_type" = ? AND "name" = ?
            binds record_type=Micropost, name=image
            -> Micropost => :image_attachment       fix: Micropost.with_attached_image

Names come from the ``Sql.name`` ("Author Load") when present, else from table names
with naive English inflection; the result is worded as "likely" in the triage.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

from detectors.shared.sqlfp import SqlShape


class Association(NamedTuple):
    owner: str  # "Post" ("" when unknown)
    name: str  # "author", "comments"
    macro: str  # belongs_to | has_many | has_one | counter | exists | attachment
    fix: str  # "Post.includes(:author)"

    @property
    def label(self) -> str:
        return f"{self.owner or '?'} => :{self.name}"


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def camelize(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_") if part)


def underscore(model: str) -> str:
    name = model.rsplit("::", 1)[-1]
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def model_of(sql_name: str, table: str = "") -> str:
    """``"Author Load"`` -> ``"Author"``; falls back to the table's class name."""
    if " " in sql_name:
        head = sql_name.rsplit(" ", 1)[0]
        if head[:1].isupper() and head not in ("SQL", "CACHE", "SCHEMA", "TRANSACTION"):
            return head
    return camelize(singular(table)) if table else ""


def infer_association(
    repeat: SqlShape,
    repeat_name: str,
    binds: Sequence[Tuple[str, str]],
    source: Optional[SqlShape],
    source_name: str,
) -> Optional[Association]:
    table, column = repeat.table, repeat.key_column
    if not table or not repeat.key_lookup:
        return None
    bind = {k: v for k, v in binds}
    source_model = model_of(source_name, source.table) if source is not None and source.table else ""
    if table == "active_storage_attachments":
        owner = bind.get("record_type") or source_model
        name = bind.get("name", "")
        if not name:
            return Association(owner, "attachments", "attachment", "preload the attachments (with_attached_<name>)")
        return Association(owner, f"{name}_attachment", "attachment", f"{owner or 'Model'}.with_attached_{name}")
    if table == "active_storage_blobs":
        return Association(source_model, "blob", "attachment", "preload the blobs with with_attached_<name> on the owner")
    repeat_model = model_of(repeat_name, table)
    if column == "id":
        name = underscore(repeat_model) if repeat_model else singular(table)
        if repeat.kind != "load":
            return None
        owner = source_model
        return Association(owner, name, "belongs_to", f"{owner or 'Owner'}.includes(:{name})")
    prefix = column[:-3]
    owner = bind.get(f"{prefix}_type") or camelize(prefix)
    many = table if repeat.limit != 1 and bind.get("LIMIT") != "1" else singular(table)
    if repeat.kind == "count":
        return Association(
            owner, table, "counter",
            f"counter_cache on {repeat_model}.belongs_to :{prefix} (then .size), or {owner}.includes(:{table}) and .size",
        )
    if repeat.kind == "exists":
        return Association(owner, table, "exists", f"{owner}.includes(:{table}) and .any?/.present? on the loaded association")
    macro = "has_many" if many == table else "has_one"
    return Association(owner, many, macro, f"{owner}.includes(:{many})")
