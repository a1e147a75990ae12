/**
 * Serialisation of faiss-gmm indexes. faiss::write_index would save an
 * IndexIVFGMM as a plain IndexIVFFlat (losing the model and the spill
 * bookkeeping), so these functions write the plugin classes in their own
 * format and delegate every other index to FAISS:
 *
 *  - IndexIVFGMM: fourcc "GmIv", a versioned payload: index header, IVF
 *    parameters (nlist, nprobe, max_codes, parallel_mode, code_size), GMM
 *    and spill parameters, probe order, posterior mass, train device, the
 *    model (as write_gmm), other_lists_width, then per list its size, ids,
 *    codes and other_lists records, and nentries. The quantizer is rebuilt
 *    from the model's means; the reconstruct() cache is not stored.
 *  - IndexPreTransform / IndexIDMap / IndexIDMap2 that (transitively) wrap an
 *    IndexIVFGMM: fourccs "GmPT" / "GmMp" / "GmM2"; each transform is a
 *    blob from faiss::write_VectorTransform with its size and checksum
 *    (checked before FAISS parses it), the sub-index is written recursively
 *    by write_index.
 *  - A bare GaussianMixture (write_gmm / read_gmm): fourcc "GmMx".
 *  - Anything else: exactly faiss::write_index / faiss::read_index, so such
 *    files stay readable by FAISS alone.
 *
 * Each payload of ours is fourcc, uint32 version, fields, and a 64-bit
 * checksum of all its bytes (nested payloads included; the word-wise hash is
 * documented in index_io.cpp), so random corruption is detected even where
 * every field is still in range.
 *
 * read_index peeks the first four bytes; a foreign fourcc is handed to
 * faiss::read_index with those bytes replayed. Every count read from a file
 * is checked against sane bounds (d <= 2^16, nlist <= 2^24, ...), against the
 * bytes left when the size of the input is known (files, VectorIOReader) and
 * against the other fields; arrays are read in bounded chunks, so a corrupt
 * or truncated file throws faiss::FaissException naming the field and value
 * instead of crashing or allocating absurd sizes. Foreign (FAISS) files are
 * checked by FAISS's own reader only.
 *
 * Numbers are stored in the machine's byte order, as FAISS does.
 */

#pragma once

#include <faiss/Index.h>
#include <faiss/impl/io.h>

#include <faiss_gmm/GaussianMixture.h>

namespace faiss_gmm {

/**
 * Write an index to a file; IndexIVFGMM and wrappers around it in the
 * faiss-gmm format, every other index through faiss::write_index.
 *
 * @param index index to write
 * @param fname output file name (created or truncated)
 */
void write_index(const faiss::Index* index, const char* fname);

/**
 * Write an index to a FAISS writer (same format as the file variant).
 *
 * @param index  index to write
 * @param writer destination, e.g. a faiss::VectorIOWriter
 */
void write_index(const faiss::Index* index, faiss::IOWriter* writer);

/**
 * Read an index written by write_index or by faiss::write_index.
 *
 * @param fname    input file name
 * @param io_flags faiss::IO_FLAG_* values, passed to faiss::read_index for
 *                 the indexes FAISS reads (IndexIVFGMM is always read whole
 *                 into memory)
 * @return a new index owned by the caller
 */
faiss::Index* read_index(const char* fname, int io_flags = 0);

/**
 * Read an index from a FAISS reader (see the file variant).
 *
 * @param reader   source, e.g. a faiss::VectorIOReader
 * @param io_flags see the file variant
 * @return a new index owned by the caller
 */
faiss::Index* read_index(faiss::IOReader* reader, int io_flags = 0);

/**
 * Write a GaussianMixture (model and last training's iteration stats).
 *
 * @param gmm    the model, trained or not
 * @param writer destination
 */
void write_gmm(const GaussianMixture& gmm, faiss::IOWriter* writer);

/**
 * Write a GaussianMixture to a file.
 *
 * @param gmm   the model
 * @param fname output file name (created or truncated)
 */
void write_gmm(const GaussianMixture& gmm, const char* fname);

/**
 * Read a GaussianMixture written by write_gmm; a trained model passes
 * GaussianMixture::check_consistency.
 *
 * @param reader source
 */
GaussianMixture read_gmm(faiss::IOReader* reader);

/**
 * Read a GaussianMixture from a file written by write_gmm.
 *
 * @param fname input file name
 */
GaussianMixture read_gmm(const char* fname);

} // namespace faiss_gmm
