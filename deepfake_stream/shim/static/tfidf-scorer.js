/*
 * tiny-tfidf in the browser: a dependency-free scorer for the portable model that the shim
 * serves at GET /v1/models/{id}/download. It reproduces models/detectors/tfidf.py exactly (scores agree
 * to ~1e-15; the tests hold it to 1e-6):
 *
 *   1. text.normalize("NFC").toLowerCase(), every whitespace run -> one space
 *   2. char_wb n-grams of each space-separated word padded with spaces (a padded word no
 *      longer than n yields itself once and stops: scikit-learn's rule), and word n-grams of
 *      /[\p{L}\p{N}_]{2,}/gu tokens joined by one space
 *   3. per block: (1 + ln count) * idf for n-grams in the vocabulary, divided by the block's
 *      L2 norm; P(AI) = sigmoid(intercept + sum of weight * coef)
 *
 * N-grams are taken over code points, not UTF-16 units, as Python slices strings. The regular
 * expressions come from the model's own "tokenizer" rules. Characters that Unicode assigned
 * after the version the Python side was built with (Python 3.11: Unicode 14) may tokenise
 * differently; every character assigned in Unicode 14 behaves identically.
 *
 * Loads as an ES module (`import "./tfidf-scorer.js"`), a classic <script>, or a CommonJS
 * module; either way it defines globalThis.TfidfScorer.
 *
 *   const scorer = await TfidfScorer.load("/v1/models/tiny-tfidf/download",
 *                                         {headers: {"X-API-Key": key}});
 *   scorer.score("some text");   // P(AI), 0..1
 *   scorer.label(0.93, text);    // "ai" | "human", at the threshold for its length
 */
(function (root) {
  "use strict";

  const FORMAT = "deepfake-stream/tfidf@1";

  function codePoints(s) {
    return Array.from(s);
  }

  function charWbNgrams(text, lo, hi, out) {
    for (const word of text.split(" ")) {
      if (!word) continue;
      const w = codePoints(" " + word + " ");
      for (let n = lo; n <= hi; n++) {
        if (w.length <= n) {
          out.push(w.join(""));
          break;
        }
        for (let i = 0; i + n <= w.length; i++) out.push(w.slice(i, i + n).join(""));
      }
    }
    return out;
  }

  function wordNgrams(wordRe) {
    return function (text, lo, hi, out) {
      const tokens = text.match(wordRe) || [];
      for (let n = lo; n <= hi; n++) {
        for (let i = 0; i + n <= tokens.length; i++) out.push(tokens.slice(i, i + n).join(" "));
      }
      return out;
    };
  }

  class Block {
    constructor(raw, analyzers) {
      const { analyzer, ngram_range: range, vocabulary, idf, coef } = raw;
      if (!(analyzer in analyzers)) throw new Error(`unsupported analyzer ${analyzer}`);
      if (!(vocabulary.length === idf.length && idf.length === coef.length)) {
        throw new Error(`malformed block ${raw.name}`);
      }
      this.name = raw.name;
      this.ngrams = analyzers[analyzer];
      this.lo = range[0];
      this.hi = range[1];
      this.index = new Map(vocabulary.map((term, i) => [term, i]));
      this.idf = Float64Array.from(idf);
      this.coef = Float64Array.from(coef);
    }

    decision(prepared) {
      const counts = new Map();
      for (const g of this.ngrams(prepared, this.lo, this.hi, [])) {
        if (this.index.has(g)) counts.set(g, (counts.get(g) || 0) + 1);
      }
      if (counts.size === 0) return 0; // an all-zero row stays zero under L2 normalisation
      let dot = 0;
      let sq = 0;
      for (const [g, c] of counts) {
        const i = this.index.get(g);
        const w = (Math.log(c) + 1) * this.idf[i];
        dot += w * this.coef[i];
        sq += w * w;
      }
      return dot / Math.sqrt(sq);
    }
  }

  class TfidfScorer {
    /**
     * @param {object} model the artifact's model.json (the download's "model" member)
     * @param {object} [meta] the download's other members: model_id, version, threshold,
     *   short_threshold and min_words (a text under min_words words is judged at
     *   short_threshold, as on the stream), sha256
     */
    constructor(model, meta = {}) {
      const tok = model && model.tokenizer;
      if (!model || model.format !== FORMAT || !tok) {
        throw new Error(`unsupported model format ${model && model.format}`);
      }
      if (tok.unicode_normalization !== "NFC" || tok.lowercase !== true) {
        throw new Error("unsupported tokenizer rules");
      }
      this.whitespace = new RegExp(tok.whitespace.js, "gu");
      const wordRe = new RegExp(tok.word_token.js, tok.word_token.js_flags || "gu");
      const analyzers = { char_wb: charWbNgrams, word: wordNgrams(wordRe) };
      this.blocks = model.blocks.map((b) => new Block(b, analyzers));
      this.intercept = Number(model.intercept);
      this.modelId = meta.model_id ?? null;
      this.version = meta.version ?? null;
      this.threshold = meta.threshold ?? 0.5;
      this.shortThreshold = meta.short_threshold ?? this.threshold;
      this.minWords = meta.min_words ?? 0;
      this.sha256 = meta.sha256 ?? null;
    }

    /** A scorer from the parsed body of GET /v1/models/{id}/download. */
    static fromDownload(doc) {
      const { model, ...meta } = doc;
      return new TfidfScorer(model, meta);
    }

    /**
     * Fetch and check a download: the "sha256" member is the digest of the "model" member's
     * bytes exactly as served (the text between `"model":` and the final `}`). It is checked
     * where WebCrypto exists (secure contexts: https, localhost); verify: false skips it.
     */
    static async load(url, { headers = {}, verify = true, fetch: get = root.fetch } = {}) {
      const res = await get(url, { headers });
      if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const text = new TextDecoder().decode(bytes);
      const doc = JSON.parse(text);
      const subtle = root.crypto && root.crypto.subtle;
      if (verify && subtle) {
        const marker = new TextEncoder().encode('"model":');
        const start = indexOf(bytes, marker) + marker.length;
        const digest = await subtle.digest("SHA-256", bytes.subarray(start, bytes.length - 1));
        const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"));
        if (start < marker.length || hex.join("") !== doc.sha256) {
          throw new Error(`model from ${url} does not match its sha256`);
        }
      }
      return TfidfScorer.fromDownload(doc);
    }

    /** Step 1: normalise, lowercase, collapse whitespace (models.tfidf.prepare). */
    prepare(text) {
      return text.normalize("NFC").toLowerCase().replace(this.whitespace, " ");
    }

    /** The logit: intercept plus every block's contribution. */
    decision(text) {
      const prepared = this.prepare(String(text));
      let sum = 0;
      for (const b of this.blocks) sum += b.decision(prepared);
      return this.intercept + sum;
    }

    /** P(AI) for one text. */
    score(text) {
      return 1 / (1 + Math.exp(-this.decision(text)));
    }

    /** The threshold a verdict on ``text`` takes: its own below min_words words. */
    thresholdFor(text) {
      const words = String(text).normalize("NFKC").split(/\s+/u).filter(Boolean).length;
      return words < this.minWords ? this.shortThreshold : this.threshold;
    }

    /** "ai" | "human" for a score of ``text`` (without it: the long texts' threshold). */
    label(score, text) {
      const threshold = text === undefined ? this.threshold : this.thresholdFor(text);
      return score >= threshold ? "ai" : "human";
    }
  }

  function indexOf(haystack, needle) {
    outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
      for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }

  TfidfScorer.FORMAT = FORMAT;
  root.TfidfScorer = TfidfScorer;
  if (typeof module === "object" && module && module.exports) module.exports = TfidfScorer;
})(typeof globalThis !== "undefined" ? globalThis : this);
