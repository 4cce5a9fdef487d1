/*
 * Proof of work for the report form (hashcash): finds a counter such that
 * SHA-256("<challenge>:<counter>") starts with the number of zero bits the server asks for,
 * while the person fills in the form. With it the form is accepted at once; without
 * JavaScript (or Web Crypto) the server accepts it after a short minimum time instead.
 */
(function () {
  'use strict';
  var form = document.querySelector('form[data-pow-bits]');
  if (!form || !window.crypto || !window.crypto.subtle || !window.TextEncoder) return;
  var bits = parseInt(form.getAttribute('data-pow-bits'), 10);
  var challenge = form.querySelector('input[name="challenge"]');
  var answer = form.querySelector('input[name="pow"]');
  if (!bits || !challenge || !answer) return;

  var token = challenge.value;
  var encoder = new TextEncoder();
  var BATCH = 256;

  function zeroBits(bytes) {
    var n = 0;
    for (var i = 0; i < bytes.length; i++) {
      if (bytes[i] === 0) { n += 8; continue; }
      return n + Math.clz32(bytes[i]) - 24;
    }
    return n;
  }

  function attempt(counter) {
    return window.crypto.subtle.digest('SHA-256', encoder.encode(token + ':' + counter)).then(function (digest) {
      return zeroBits(new Uint8Array(digest)) >= bits ? counter : -1;
    });
  }

  function search(start) {
    var tries = [];
    for (var i = 0; i < BATCH; i++) tries.push(attempt(start + i));
    Promise.all(tries).then(function (results) {
      for (var j = 0; j < results.length; j++) {
        if (results[j] >= 0) {
          answer.value = String(results[j]);
          form.setAttribute('data-pow-done', 'true');
          return;
        }
      }
      setTimeout(function () { search(start + BATCH); }, 0);
    });
  }

  search(0);
})();
