/*
 * sbutil.c
 *		Allocation hooks, byte buffers, UTF-8 repair and name validation
 *		shared by the extension and the executor.
 */
#include "sbutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <time.h>
#include <unistd.h>

void *(*sb_malloc_hook)(size_t size) = malloc;
void (*sb_free_hook)(void *ptr) = free;

/* sb_json_object makes an empty JSON object without naming json_object. */
json_t *
sb_json_object(void)
{
	return json_pack("{}");
}

/* sb_set_allocator points shared code and jansson at one allocator. */
void
sb_set_allocator(void *(*alloc_fn)(size_t), void (*free_fn)(void *))
{
	sb_malloc_hook = alloc_fn;
	sb_free_hook = free_fn;
	json_set_alloc_funcs(alloc_fn, free_fn);
}

/* sb_malloc allocates or returns NULL; callers check. */
void *
sb_malloc(size_t size)
{
	return sb_malloc_hook(size ? size : 1);
}

/* sb_realloc grows a block by copying (the hooks have no realloc). */
void *
sb_realloc(void *ptr, size_t old_size, size_t new_size)
{
	void *p = sb_malloc(new_size);

	if (p == NULL)
		return NULL;
	if (ptr != NULL)
	{
		memcpy(p, ptr, old_size < new_size ? old_size : new_size);
		sb_free(ptr);
	}
	return p;
}

/* sb_free frees a block from sb_malloc; NULL is fine. */
void
sb_free(void *ptr)
{
	if (ptr != NULL)
		sb_free_hook(ptr);
}

/* sb_strdup copies a string with sb_malloc. */
char *
sb_strdup(const char *s)
{
	return sb_strndup(s, strlen(s));
}

/* sb_strndup copies n bytes of s and terminates them. */
char *
sb_strndup(const char *s, size_t n)
{
	char *p = sb_malloc(n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* sb_buf_init prepares an empty buffer that keeps at most cap bytes. */
void
sb_buf_init(SbBuf *buf, size_t cap)
{
	memset(buf, 0, sizeof(*buf));
	buf->cap = cap;
}

/*
 * sb_buf_append adds bytes, keeping at most cap of them; the rest are dropped
 * and the buffer is marked truncated.  Returns false only when out of memory.
 */
bool
sb_buf_append(SbBuf *buf, const void *data, size_t n)
{
	size_t keep = n;

	if (buf->cap > 0 && buf->len + keep > buf->cap)
	{
		keep = buf->cap > buf->len ? buf->cap - buf->len : 0;
		buf->truncated = true;
	}
	if (keep == 0)
		return true;
	if (buf->len + keep + 1 > buf->alloc)
	{
		size_t want = buf->alloc ? buf->alloc : 4096;
		char *p;

		while (want < buf->len + keep + 1)
			want *= 2;
		if (buf->cap > 0 && want > buf->cap + 1)
			want = buf->cap + 1;
		p = sb_realloc(buf->data, buf->len, want);
		if (p == NULL)
			return false;
		buf->data = p;
		buf->alloc = want;
	}
	memcpy(buf->data + buf->len, data, keep);
	buf->len += keep;
	buf->data[buf->len] = '\0';
	return true;
}

/* sb_write_all writes len bytes, retrying short writes; false with errno set. */
/* sb_now_ms returns CLOCK_MONOTONIC time in milliseconds. */
int64_t
sb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
sb_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0)
	{
		ssize_t n = write(fd, p, len > (1 << 30) ? (1 << 30) : len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			if (n == 0)
				errno = EIO;
			return false;
		}
		p += n;
		len -= (size_t) n;
	}
	return true;
}

/* sb_buf_free releases the buffer's memory. */
void
sb_buf_free(SbBuf *buf)
{
	sb_free(buf->data);
	buf->data = NULL;
	buf->len = buf->alloc = 0;
}

/*
 * sb_utf8_seqlen returns the length (1-4) of the well-formed UTF-8 sequence
 * starting at s, or 0 if it is malformed or incomplete within avail bytes.
 * Overlong forms, surrogates and code points above U+10FFFF are malformed.
 */
int
sb_utf8_seqlen(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	int n;
	unsigned int cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (avail < (size_t) n)
		return 0;
	for (int i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	if (cp >= 0xD800 && cp <= 0xDFFF)
		return 0;
	return n;
}

/* Is the tail at s (avail bytes, avail < its needed length) a valid prefix? */
static bool
utf8_incomplete_prefix(const unsigned char *s, size_t avail)
{
	int need;

	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		need = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		need = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		need = 4;
	else
		return false;
	if (avail >= (size_t) need)
		return false;
	for (size_t i = 1; i < avail; i++)
		if ((s[i] & 0xC0) != 0x80)
			return false;
	return true;
}

char *
sb_utf8_repair(const char *data, size_t len, bool trim_partial, size_t *out_len,
			   bool *repaired)
{
	const unsigned char *s = (const unsigned char *) data;
	size_t i = 0;
	size_t o = 0;
	char *out;

	*repaired = false;
	/* Worst case: every byte becomes the 3-byte replacement character. */
	out = sb_malloc(len * 3 + 1);
	if (out == NULL)
		return NULL;
	while (i < len)
	{
		int n = s[i] == 0 ? 0 : sb_utf8_seqlen(s + i, len - i);

		if (n > 0)
		{
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
			continue;
		}
		if (trim_partial && s[i] != 0 && utf8_incomplete_prefix(s + i, len - i))
			break;
		out[o++] = (char) 0xEF;
		out[o++] = (char) 0xBF;
		out[o++] = (char) 0xBD;
		*repaired = true;
		i++;
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

/*
 * sb_path_names_directory says whether a path's last component can only
 * name a directory: it ends with "/", or is "." or "..".
 */
bool
sb_path_names_directory(const char *path)
{
	const char *last = strrchr(path, '/');

	last = last ? last + 1 : path;
	return last[0] == '\0' || strcmp(last, ".") == 0 || strcmp(last, "..") == 0;
}

bool
sb_session_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63)
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
		  (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++)
	{
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/*
 * sb_storage_key_valid says whether a string can name a session's storage:
 * a session name (0.1.0 named storage after the session) or "_" and digits
 * (sandbox.sessions.storage_key of a later session).
 */
bool
sb_storage_key_valid(const char *key)
{
	size_t		n = strlen(key);

	if (n >= 2 && n <= 20 && key[0] == '_')
	{
		for (size_t i = 1; i < n; i++)
			if (key[i] < '0' || key[i] > '9')
				return false;
		return true;
	}
	return sb_session_name_valid(key);
}

bool
sb_env_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 255)
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
		  name[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
	{
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}
