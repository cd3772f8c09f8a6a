/* num: see include/magpie/num.h */
#include "magpie/num.h"

#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/*
 * strtoull/strtoll's scan: white space, a sign, digits. Returns the position after the digits, or
 * NULL when there are none. *mag is the magnitude, *overflow tells whether it passed `limit`.
 */
static const char *scan(const char *s, const char *end, bool *neg, uint64_t *mag, bool *overflow)
{
    while (s < end && is_space(*s))
        s++;
    *neg = false;
    if (s < end && (*s == '+' || *s == '-'))
        *neg = *s++ == '-';
    const char *digits = s;
    uint64_t v = 0;
    *overflow = false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            v = v * 10 + d;
    }
    *mag = v;
    return s == digits ? NULL : s;
}

/* What may follow the number: white space or the end (memcached's '\0'). */
static bool ends_well(const char *p, const char *end)
{
    return p == end || is_space(*p);
}

bool mp_num_u64(const char *s, size_t len, uint64_t *out)
{
    const char *end = s + len;
    bool neg, overflow;
    uint64_t mag;
    *out = 0;
    const char *p = scan(s, end, &neg, &mag, &overflow);
    if (!p || overflow || !ends_well(p, end))
        return false;
    uint64_t v = neg ? (uint64_t)0 - mag : mag;
    if ((int64_t)v < 0 && memchr(s, '-', len))
        return false;
    *out = v;
    return true;
}

bool mp_num_u32(const char *s, size_t len, uint32_t *out)
{
    uint64_t v;
    *out = 0;
    if (!mp_num_u64(s, len, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

bool mp_num_i64(const char *s, size_t len, int64_t *out)
{
    const char *end = s + len;
    bool neg, overflow;
    uint64_t mag;
    *out = 0;
    const char *p = scan(s, end, &neg, &mag, &overflow);
    if (!p || overflow || !ends_well(p, end))
        return false;
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
        return false; /* ERANGE */
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

bool mp_num_i32(const char *s, size_t len, int32_t *out)
{
    int64_t v;
    *out = 0;
    if (!mp_num_i64(s, len, &v))
        return false;
    *out = (int32_t)(uint32_t)(uint64_t)v;
    return true;
}

size_t mp_num_format(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}
