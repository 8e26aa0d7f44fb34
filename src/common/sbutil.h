/*
 * sbutil.h
 *		Small helpers shared by the extension and the executor: allocation
 *		hooks, growable byte buffers and UTF-8 repair.
 *
 * Nothing here includes PostgreSQL headers.  The extension points the
 * allocation hooks at palloc so that an ERROR never leaks memory; the
 * executor keeps malloc.
 */
#ifndef SBUTIL_H
#define SBUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * The postgres binary exports a function named json_object (the SQL function)
 * that the dynamic linker would bind in place of jansson's constructor.  All
 * code goes through sb_json_object() instead; test/check_symbols.sh verifies
 * that the built library references no json_object.
 */
extern json_t *sb_json_object(void);
#define json_object() sb_json_object()

/* Allocation hooks used by all shared code (and by jansson, see sb_set_allocator). */
extern void *(*sb_malloc_hook)(size_t size);
extern void (*sb_free_hook)(void *ptr);

extern void sb_set_allocator(void *(*alloc_fn)(size_t), void (*free_fn)(void *));
extern void *sb_malloc(size_t size);
extern void *sb_realloc(void *ptr, size_t old_size, size_t new_size);
extern void sb_free(void *ptr);
extern char *sb_strdup(const char *s);
extern char *sb_strndup(const char *s, size_t n);

/* A growable byte buffer that stops growing at "cap" bytes and remembers it did. */
typedef struct SbBuf
{
	char *data;
	size_t len;
	size_t alloc;
	size_t cap;		/* 0 = unlimited */
	bool truncated; /* bytes were dropped because of cap */
} SbBuf;

extern void sb_buf_init(SbBuf *buf, size_t cap);
extern bool sb_buf_append(SbBuf *buf, const void *data, size_t n);
extern void sb_buf_free(SbBuf *buf);

/* sb_now_ms returns CLOCK_MONOTONIC time in milliseconds. */
extern int64_t sb_now_ms(void);

/* sb_write_all writes len bytes to fd, retrying short writes; false with errno set. */
extern bool sb_write_all(int fd, const void *data, size_t len);

/*
 * sb_utf8_repair returns a newly allocated, NUL-terminated copy of data in
 * which every invalid UTF-8 sequence and every NUL byte is replaced by U+FFFD.
 * If trim_partial is true, an incomplete sequence at the very end (left by a
 * byte cap) is dropped instead of replaced.  *repaired says whether anything
 * changed; *out_len receives the length.
 */
extern char *sb_utf8_repair(const char *data, size_t len, bool trim_partial,
							size_t *out_len, bool *repaired);

/* sb_utf8_valid_len returns the length of the valid sequence at s, or 0. */
extern int sb_utf8_seqlen(const unsigned char *s, size_t avail);

/* A valid session name: 1-63 chars of [A-Za-z0-9_.-], starting alphanumeric. */
extern bool sb_session_name_valid(const char *name);
extern bool sb_path_names_directory(const char *path);
extern bool sb_storage_key_valid(const char *key);

/* A valid environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most 255 bytes. */
extern bool sb_env_name_valid(const char *name);

#endif /* SBUTIL_H */
