"""SQLAlchemy 2's ORM against a running Cairn server with no overrides, through its
psycopg2, psycopg 3 and asyncpg dialects (run by the end-to-end test
`hostile::sqlalchemy_reflection_failed_on_pg_catalog`): `create_all`, reflection of the
tables, columns, primary, foreign and unique keys and indexes (SQLAlchemy's queries of
pg_catalog: `unnest`, `generate_subscripts`, `array_agg`, `= ANY(ARRAY[…])`, `::regclass`,
`json_build_object`, int2vector), CRUD with a relationship, and a rolled-back flush. It
failed at its first catalog query, on pg_type and `pg_catalog.version()`.

Usage: python3 sqlalchemy_orm.py HOST PORT USER PASSWORD DATABASE
"""

import asyncio
import sys

try:
    from sqlalchemy import Boolean, ForeignKey, String, create_engine, inspect, select, text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
except ImportError as missing:
    sys.exit(f"{missing}: this test needs sqlalchemy[asyncio] (.ci/run installs it)")

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]

class Base(DeclarativeBase):
    pass

class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author", lazy="selectin")

class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books", lazy="selectin")

def reflect(conn):
    insp = inspect(conn)
    return {
        "tables": sorted(insp.get_table_names()),
        "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns("books")],
        "pk": insp.get_pk_constraint("books")["constrained_columns"],
        "fks": [(f["constrained_columns"], f["referred_table"], f["referred_columns"]) for f in insp.get_foreign_keys("books")],
        "indexes": [(i["name"], i["column_names"], i["unique"]) for i in insp.get_indexes("books")],
        "unique": [u["column_names"] for u in insp.get_unique_constraints("authors")],
    }

EXPECTED = {
    "tables": ["authors", "books"],
    "columns": [("id", "INTEGER", False), ("title", "VARCHAR(100)", False), ("author_id", "INTEGER", False)],
    "pk": ["id"],
    "fks": [(["author_id"], "authors", ["id"])],
    "indexes": [("ix_books_title", ["title"], False)],
    "unique": [["name"]],
}

def check(found):
    for key, want in EXPECTED.items():
        got = found[key]
        if key == "tables":
            got = [t for t in got if t in want]
        assert got == want, f"{key}: {got!r} != {want!r}"

async def run_async(url):
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with engine.connect() as conn:
        check(await conn.run_sync(reflect))
    async with AsyncSession(engine, expire_on_commit=False) as s:
        a = Author(name="ada")
        s.add_all([a, Book(title="notes", author=a), Book(title="more", author=a)])
        await s.commit()
        books = (await s.scalars(select(Book).order_by(Book.id))).all()
        assert [(b.title, b.author.name, b.author.active) for b in books] == [("notes", "ada", True), ("more", "ada", True)]
        await s.delete(books[0])
        await s.commit()
        async with s.begin():
            s.add(Book(title="rolled back", author_id=a.id))
            await s.flush()
            await s.rollback()
        assert (await s.scalar(text("SELECT count(*) FROM books"))) == 1
    await engine.dispose()

def run_sync(url):
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.connect() as conn:
        check(reflect(conn))
    with Session(engine) as s:
        a = Author(name="ada")
        s.add_all([a, Book(title="notes", author=a), Book(title="more", author=a)])
        s.commit()
        books = s.scalars(select(Book).order_by(Book.id)).all()
        assert [(b.title, b.author.name, b.author.active) for b in books] == [("notes", "ada", True), ("more", "ada", True)]
        s.delete(books[0])
        s.commit()
        s.add(Book(title="rolled back", author_id=a.id))
        s.flush()
        s.rollback()
        assert s.scalar(text("SELECT count(*) FROM books")) == 1
    engine.dispose()

for dialect in ("psycopg2", "psycopg", "asyncpg"):
    url = f"postgresql+{dialect}://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}"
    if dialect == "asyncpg":
        asyncio.run(run_async(url))
    else:
        run_sync(url)
    print(dialect, "ok")
