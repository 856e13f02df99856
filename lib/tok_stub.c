/* tok_stub — stand-ins for the encoding half of the tokenizer (tok.h) while
 * its source, lib/tok_enc.c, is not in this tree: dsv4_tok_encode and
 * dsv4_tok_split report DSV4_E_UNSUPPORTED.  They are weak symbols, so the
 * real definitions win when tok_enc.c is linked in; delete this file then. */
#include "tok.h"

__attribute__((weak)) int dsv4_tok_encode(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                                          dsv4_tok_ids *out, dsv4_err *err)
{
    return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "text to token ids is not built in (lib/tok_enc.c is missing)");
}

__attribute__((weak)) int dsv4_tok_split(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                                         dsv4_tok_piece_fn piece, void *ctx, dsv4_err *err)
{
    return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "text to token ids is not built in (lib/tok_enc.c is missing)");
}
