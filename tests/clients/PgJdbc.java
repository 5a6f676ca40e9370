// pgJDBC (Debian's libpostgresql-jdbc-java, 42.5) against a running Cairn server, with no
// overrides (run by the end-to-end test `hostile::pgjdbcs_key_and_index_metadata_were_syntax_errors`):
// typed parameters and a batch, bool/int8/float8 columns, a savepoint rolled back, a fetch
// size (a portal read in parts), and the metadata tools read: getTables, getColumns, and
// getPrimaryKeys and getIndexInfo, whose SQL (information_schema._pg_expandarray, its
// fields `(keys).x`, `trim(both '"' from …)`) was a syntax error for SQLite.
//
// Usage: java -cp /usr/share/java/postgresql.jar PgJdbc.java HOST PORT USER PASSWORD DATABASE
import java.sql.*;
import java.util.*;

public class PgJdbc {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String host = args[0], port = args[1], user = args[2], password = args[3], db = args[4];
        String url = "jdbc:postgresql://" + host + ":" + port + "/" + db;
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        try (Connection c = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = c.getMetaData();
            System.out.println("server: " + meta.getDatabaseProductName() + " " + meta.getDatabaseProductVersion());
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS jd");
                s.execute("CREATE TABLE jd (id SERIAL PRIMARY KEY, name VARCHAR(40) NOT NULL, ok BOOLEAN, score DOUBLE PRECISION, n BIGINT)");
            }
            try (PreparedStatement p = c.prepareStatement("INSERT INTO jd (name, ok, score, n) VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < 10; i++) {
                    p.setString(1, "row" + i);
                    p.setBoolean(2, i % 2 == 0);
                    p.setDouble(3, i * 1.5);
                    p.setLong(4, 10000000000L + i);
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                check(counts.length == 10, "batch");
            }
            try (PreparedStatement p = c.prepareStatement("SELECT id, name, ok, score, n FROM jd WHERE ok = ? AND score > ? ORDER BY id")) {
                p.setBoolean(1, true);
                p.setDouble(2, 2.0);
                try (ResultSet r = p.executeQuery()) {
                    int rows = 0;
                    while (r.next()) {
                        rows++;
                        check(r.getBoolean("ok"), "bool");
                        check(r.getString("name").startsWith("row"), "text");
                        check(r.getLong("n") > 10000000000L, "bigint");
                    }
                    check(rows == 4, "rows " + rows);
                }
            }
            // Transactions and a savepoint.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE jd SET name = 'changed' WHERE id = 1");
                Savepoint sp = c.setSavepoint("sp");
                s.executeUpdate("DELETE FROM jd");
                c.rollback(sp);
                c.commit();
                try (ResultSet r = s.executeQuery("SELECT count(*), max(name) FROM jd")) {
                    r.next();
                    check(r.getInt(1) == 10, "count after savepoint");
                }
            }
            // A fetch size: rows in portions through a portal.
            try (Statement s = c.createStatement()) {
                s.setFetchSize(3);
                try (ResultSet r = s.executeQuery("SELECT id FROM jd ORDER BY id")) {
                    int rows = 0;
                    while (r.next()) rows++;
                    check(rows == 10, "fetch size rows " + rows);
                }
            }
            c.commit();
            c.setAutoCommit(true);
            // Metadata, as tools read it.
            try (ResultSet r = meta.getTables(null, "public", "jd", new String[] {"TABLE"})) {
                check(r.next(), "getTables");
                check(r.getString("TABLE_NAME").equals("jd"), "table name");
            }
            try (ResultSet r = meta.getColumns(null, "public", "jd", null)) {
                List<String> cols = new ArrayList<>();
                while (r.next()) cols.add(r.getString("COLUMN_NAME") + ":" + r.getString("TYPE_NAME"));
                System.out.println("columns: " + cols);
                check(cols.size() == 5, "getColumns " + cols);
            }
            try (ResultSet r = meta.getPrimaryKeys(null, "public", "jd")) {
                check(r.next() && r.getString("COLUMN_NAME").equals("id"), "primary key");
                check(r.getShort("KEY_SEQ") == 1 && !r.next(), "one key column");
            }
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS jk");
                s.execute("CREATE TABLE jk (a INTEGER, b TEXT, c TEXT, PRIMARY KEY (b, a))");
                s.execute("CREATE INDEX jk_c ON jk (c)");
            }
            try (ResultSet r = meta.getPrimaryKeys(null, "public", "jk")) {
                List<String> keys = new ArrayList<>();
                while (r.next()) keys.add(r.getString("COLUMN_NAME") + r.getShort("KEY_SEQ"));
                check(keys.equals(List.of("b1", "a2")), "composite key " + keys);
            }
            try (ResultSet r = meta.getIndexInfo(null, "public", "jk", false, false)) {
                List<String> indexes = new ArrayList<>();
                while (r.next()) indexes.add(r.getString("INDEX_NAME") + ":" + r.getString("COLUMN_NAME") + ":" + r.getBoolean("NON_UNIQUE"));
                System.out.println("indexes: " + indexes);
                check(indexes.contains("jk_c:c:true"), "index " + indexes);
            }
            try (PreparedStatement p = c.prepareStatement("SELECT count(*) FROM jd WHERE name = ?")) {
                p.setString(1, "changed");
                try (ResultSet r = p.executeQuery()) {
                    r.next();
                    check(r.getInt(1) == 1, "count param");
                }
            }
            System.out.println("pgjdbc ok");
        }
    }
}
