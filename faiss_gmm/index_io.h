/**
 * Serialisation of faiss-gmm indexes. faiss::write_index does not know
 * IndexIVFGMM (it refuses it), so these functions write the plugin classes
 * in their own format and delegate every other index to FAISS:
 *
 *  - IndexIVFGMM: fourcc "GmIv", version 2: index header, nlist, the build
 *    and search parameters as key=value strings (IVFGMMParameters.h: the
 *    same key table and checks as every other way of setting them), the
 *    model (as write_gmm), the code index (its parameters and its
 *    quantizer of the means, in FAISS's own format for every code) as a
 *    blob with its own checksum, checked before FAISS parses it, then
 *    code_size, the spill record width and per list its size, ids, codes
 *    and spill records, and nentries. Reading checks every record and that
 *    the canonical copies add up to ntotal.
 *  - IndexPreTransform that (transitively) wraps an IndexIVFGMM: fourcc
 *    "GmPT"; each transform is a blob from faiss::write_VectorTransform
 *    with its size and checksum (checked before FAISS parses it), the
 *    sub-index is written recursively by write_index. IndexIDMap around an
 *    IndexIVFGMM is refused (IndexIVFGMM stores ids itself).
 *  - IndexRefine / IndexRefineFlat around an IndexIVFGMM ("...,RFlat",
 *    "...,Refine(...)" strings): fourcc "GmRf"; the index header, whether
 *    it is an IndexRefineFlat, k_factor, then the refinement index and the
 *    base index, each written recursively by write_index.
 *  - A bare GaussianMixture (write_gmm / read_gmm): fourcc "GmMx".
 *  - Anything else: exactly faiss::write_index / faiss::read_index, so such
 *    files stay readable by FAISS alone.
 *
 * Each payload of ours is fourcc, uint32 version, fields, and a 64-bit
 * checksum of all its bytes (nested payloads included; the word-wise hash is
 * documented in index_io.cpp), so random corruption is detected even where
 * every field is still in range. Files of another format version are
 * refused with a message naming it.
 *
 * Writing to a file goes through a temporary file in the same directory,
 * checks every write, the flush, fsync and close, then renames it over the
 * target: a failure throws and never leaves a truncated file behind.
 *
 * read_index peeks the first four bytes; a foreign fourcc is handed to
 * faiss::read_index with those bytes replayed. Every count read from a file
 * is checked against sane bounds (d <= 2^16, nlist <= 2^24, ...), against the
 * bytes left when the size of the input is known (files, VectorIOReader) and
 * against the other fields; arrays are read in bounded chunks, so a corrupt
 * or truncated file throws faiss::FaissException naming the field and value
 * instead of crashing or allocating absurd sizes. FAISS parts (codes,
 * foreign files) are checked by FAISS's own reader, then by our checksum.
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
 * A deep copy of an index. Indexes that hold an IndexIVFGMM (bare or in
 * the wrappers write_index supports) are copied exactly through the
 * write_index / read_index format; every other index goes to
 * faiss::clone_index (which refuses IndexIVFGMM, whose class it does not
 * know).
 *
 * @param index the index to copy
 * @return a new index owned by the caller
 */
faiss::Index* clone_index(const faiss::Index* index);

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
