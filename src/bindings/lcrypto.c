/*
 * lcrypto.c: the crypto binding (module eventilator.crypto), on OpenSSL's
 * libcrypto. It exists for signed webhooks: an HMAC-SHA256 over the body
 * that the receiver recomputes with its copy of the secret, as GitHub's
 * X-Hub-Signature-256 works. libcrypto is already in the full runtime's
 * process (libcurl's TLS stack), so this costs no new library at run time,
 * and no digest is written here by hand.
 *
 * Like the other bindings it is a Lua C module loaded by the full runtime
 * and by a stock lua5.4 (the specs); the lean binary never links libcrypto.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <lauxlib.h>
#include <lua.h>

/* Built with -fvisibility=hidden: only the opener is exported. */
#if defined(__GNUC__)
#define CRYPTO_EXPORT __attribute__((visibility("default")))
#else
#define CRYPTO_EXPORT
#endif

CRYPTO_EXPORT int luaopen_eventilator_crypto(lua_State *L);

static void push_hex(lua_State *L, const unsigned char *p, unsigned n)
{
    static const char digits[] = "0123456789abcdef";
    char out[2 * EVP_MAX_MD_SIZE];
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    lua_pushlstring(L, out, 2 * (size_t)n);
}

/*
 * crypto.hmac_sha256(key, data [, raw]) -> hex string (64 chars), or the
 * 32 raw bytes when raw is true. Both strings are binary-safe.
 * Raises on arguments that are not strings; libcrypto failing (it does not,
 * short of memory) returns nil, err.
 */
static int c_hmac_sha256(lua_State *L)
{
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    int raw = lua_toboolean(L, 3);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* HMAC() with a NULL key pointer would mean "no key": give it a byte to point at */
    static const unsigned char empty[1];
    if (!HMAC(EVP_sha256(), klen ? (const void *)key : empty, (int)klen,
              (const unsigned char *)data, dlen, md, &mdlen)) {
        lua_pushnil(L);
        lua_pushliteral(L, "crypto: HMAC-SHA256 failed");
        return 2;
    }
    if (raw)
        lua_pushlstring(L, (const char *)md, mdlen);
    else
        push_hex(L, md, mdlen);
    return 1;
}

/* crypto.sha256(data) -> hex string of the digest */
static int c_sha256(lua_State *L)
{
    size_t dlen;
    const char *data = luaL_checklstring(L, 1, &dlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, dlen, md, &mdlen, EVP_sha256(), NULL)) {
        lua_pushnil(L);
        lua_pushliteral(L, "crypto: SHA-256 failed");
        return 2;
    }
    push_hex(L, md, mdlen);
    return 1;
}

/* crypto.equal(a, b) -> boolean, in time that does not depend on where they differ */
static int c_equal(lua_State *L)
{
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la);
    const char *b = luaL_checklstring(L, 2, &lb);
    lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
    return 1;
}

static const luaL_Reg crypto_funcs[] = {
    {"hmac_sha256", c_hmac_sha256},
    {"sha256", c_sha256},
    {"equal", c_equal},
    {NULL, NULL},
};

CRYPTO_EXPORT int luaopen_eventilator_crypto(lua_State *L)
{
    luaL_newlib(L, crypto_funcs);
    return 1;
}
