/*
 * Progressive help on the reporter forms; without JavaScript they work the same, with the
 * limits stated in the page and checked again by the server.
 * - a live character counter under each text with a limit, marked as an error past it (not a
 *   maxlength, which would silently cut a pasted testimony; the server refuses it, keeping it all);
 * - a file over the size limit is named before sending, so it does not cost the others;
 * - upload progress while the form is sent, then the page the server answers with.
 */
(function () {
  'use strict';
  document.querySelectorAll('textarea[data-counter]').forEach(function (area) {
    var out = document.getElementById(area.getAttribute('data-counter'));
    if (!out) return;
    var template = out.getAttribute('data-template');
    var max = parseInt(area.getAttribute('data-maxlength'), 10);
    function update() {
      out.textContent = template.replace('{count}', area.value.length.toLocaleString(document.documentElement.lang));
      out.classList.toggle('field-error', area.value.length > max);
    }
    area.addEventListener('input', update);
    update();
  });

  document.querySelectorAll('form[data-max-file-bytes]').forEach(function (form) {
    var max = parseInt(form.getAttribute('data-max-file-bytes'), 10);
    var input = form.querySelector('input[type="file"]');
    var progress = form.querySelector('[data-progress]');
    if (input) {
      input.addEventListener('change', function () {
        var big = Array.prototype.filter.call(input.files, function (f) { return f.size > max; });
        input.setCustomValidity(big.length ? big.map(function (f) { return f.name; }).join(', ') + ': ' + form.getAttribute('data-file-too-large') : '');
        if (big.length) input.reportValidity();
      });
    }
    if (!progress || !window.XMLHttpRequest || !window.FormData) return;
    form.addEventListener('submit', function (event) {
      if (event.defaultPrevented || !input || !input.files.length) return;
      if (form.hasAttribute('data-pow-bits') && form.getAttribute('data-pow-done') !== 'true') return;
      event.preventDefault();
      var xhr = new XMLHttpRequest();
      var bar = progress.querySelector('progress');
      var label = progress.querySelector('span');
      progress.hidden = false;
      xhr.upload.addEventListener('progress', function (e) {
        if (!e.lengthComputable) return;
        bar.value = Math.round((e.loaded / e.total) * 100);
        label.textContent = bar.value + ' %';
      });
      xhr.addEventListener('load', function () {
        // Sent: the server redirected to the page to show. Refused: it answered the form again, with what was typed.
        if (xhr.responseURL && xhr.responseURL !== form.action) return window.location.assign(xhr.responseURL);
        document.open();
        document.write(xhr.responseText);
        document.close();
      });
      xhr.addEventListener('error', function () { progress.hidden = true; form.submit(); });
      xhr.open('POST', form.action);
      xhr.send(new FormData(form));
    });
  });
})();
