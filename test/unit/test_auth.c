/* Unit tests for auth: reading the -Y file as memcached does, checking users, reloading. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "magpie/auth.h"

static char path[64];
static struct mp_auth a;
static char err[512];

static void write_file(const char *content)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
}

static void setup(void)
{
    strcpy(path, "/tmp/magpie_test_auth.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

static void teardown(void)
{
    mp_auth_teardown(&a);
    unlink(path);
}

static bool check(const char *user, const char *pass)
{
    return mp_auth_check(&a, user, strlen(user), pass, strlen(pass));
}

START_TEST(test_a_user_with_the_right_password_passes_and_nothing_else_does)
{
    write_file("alice:secret\nbob:hunter2\n");
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), 0);
    ck_assert(check("alice", "secret"));
    ck_assert(check("bob", "hunter2"));
    ck_assert(!check("alice", "hunter2")); /* another user's password */
    ck_assert(!check("alice", "secre"));   /* a prefix */
    ck_assert(!check("alice", "secrets")); /* longer */
    ck_assert(!check("alic", "secret"));
    ck_assert(!check("carol", "secret"));
    ck_assert(!check("", ""));
    ck_assert(!mp_auth_check(&a, LIT("alice\0"), LIT("secret"))); /* the lengths count, not NULs */
}
END_TEST

START_TEST(test_line_ends_blank_lines_and_colons_in_passwords)
{
    /* "\r\n" ends a line as "\n" does; blank lines are skipped; the user ends at the first ':', so
     * a password may hold more; an empty password is a password */
    write_file("\nalice:se:cr:et\r\n\nbob:\ncarol:last line without an end");
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), 0);
    ck_assert(check("alice", "se:cr:et"));
    ck_assert(!check("alice", "se:cr:et\r"));
    ck_assert(check("bob", ""));
    ck_assert(check("carol", "last line without an end"));
    ck_assert_uint_eq(a.nentries, 3);
}
END_TEST

START_TEST(test_more_than_memcacheds_eight_users_are_read)
{
    char content[4096] = "";
    for (int i = 0; i < 50; i++) {
        char line[48];
        snprintf(line, sizeof(line), "user%d:pass%d\n", i, i);
        strcat(content, line);
    }
    write_file(content);
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), 0);
    ck_assert(check("user49", "pass49"));
    ck_assert(!check("user49", "pass48"));
}
END_TEST

START_TEST(test_a_line_without_a_colon_is_memcacheds_malformed_entry)
{
    write_file("alice:secret\nno colon here\n");
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), -1);
    char want[256];
    snprintf(want, sizeof(want), "Authfile [%s] has a malformed entry. Should be 'user:password'", path);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_a_missing_file_says_so)
{
    unlink(path);
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), -1);
    char want[256];
    snprintf(want, sizeof(want), "Could not open authfile [%s] for reading, error No such file or directory", path);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_reload_replaces_the_users_and_a_bad_file_leaves_them)
{
    write_file("alice:secret\n");
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), 0);
    write_file("bob:hunter2\n");
    ck_assert_int_eq(mp_auth_reload(&a, err, sizeof(err)), 0);
    ck_assert(check("bob", "hunter2"));
    ck_assert(!check("alice", "secret"));
    write_file("garbage\n");
    ck_assert_int_eq(mp_auth_reload(&a, err, sizeof(err)), -1);
    ck_assert(check("bob", "hunter2"));
    unlink(path);
    ck_assert_int_eq(mp_auth_reload(&a, err, sizeof(err)), -1);
    ck_assert(check("bob", "hunter2"));
}
END_TEST

START_TEST(test_an_empty_file_lets_nobody_in)
{
    write_file("");
    ck_assert_int_eq(mp_auth_setup(&a, path, err, sizeof(err)), 0);
    ck_assert(!check("", ""));
    ck_assert(!check("alice", "secret"));
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_user_with_the_right_password_passes_and_nothing_else_does);
    tcase_add_test(tc, test_line_ends_blank_lines_and_colons_in_passwords);
    tcase_add_test(tc, test_more_than_memcacheds_eight_users_are_read);
    tcase_add_test(tc, test_a_line_without_a_colon_is_memcacheds_malformed_entry);
    tcase_add_test(tc, test_a_missing_file_says_so);
    tcase_add_test(tc, test_reload_replaces_the_users_and_a_bad_file_leaves_them);
    tcase_add_test(tc, test_an_empty_file_lets_nobody_in);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(auth_suite());
}
