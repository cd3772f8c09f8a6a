/*
 * num: decimal numbers read exactly as memcached 1.6 reads them (its safe_strtoull, safe_strtoul
 * and safe_strtol over strtoull/strtoul/strtol on a 64-bit machine).
 *
 * The input is a token of `len` bytes, not NUL-terminated; its end counts as the terminator.
 * Leading white space and a sign are accepted; the number must be followed by white space or the
 * end; a value out of range fails; a negative value fails where an unsigned one is wanted, unless
 * it is small enough in magnitude that strtoull's wrap-around leaves it below 2^63 (as memcached).
 * The 32-bit forms keep the low 32 bits of the 64-bit value, as memcached's casts do.
 */
#ifndef MAGPIE_NUM_H
#define MAGPIE_NUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool mp_num_u64(const char *s, size_t len, uint64_t *out); /* safe_strtoull */
bool mp_num_u32(const char *s, size_t len, uint32_t *out); /* safe_strtoul */
bool mp_num_i32(const char *s, size_t len, int32_t *out);  /* safe_strtol */
bool mp_num_i64(const char *s, size_t len, int64_t *out);  /* safe_strtoll */

/* The decimal digits of v into out (room for 20, no NUL); returns their number. */
size_t mp_num_format(char *out, uint64_t v);

#endif
