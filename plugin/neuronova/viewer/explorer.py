"""JavaScript added to Orthanc Explorer (``orthanc.ExtendOrthancExplorer``).

Explorer is admin-only (the gate sees to it), so this code runs with the admin's session
cookie and may call admin routes:
- every page header gets a "Log out" button (``/neuronova/logout``);
- the study page gets a "NeuroNova" panel: the HTJ2K rendition status of the study's
  instances (``GET /neuronova/htj2k/studies/{uid}``), its AI jobs
  (``GET /neuronova/ai/jobs?study={uid}``; "not available" while that API is absent), and a
  link that opens the study in OHIF in a new tab, through a one-hour share link
  (``POST /neuronova/shares``), so that it works with or without OHIF's OpenID login.

Orthanc Explorer 1.10 uses jQuery 1.x and jQuery Mobile: pages are ``div[data-role=page]``,
``.live()`` binds delegated handlers, ``$.mobile.pageData.uuid`` is the Orthanc ID of the
resource shown.
"""

from __future__ import annotations

import json

from .settings import PREFIX

_SCRIPT = r"""
/* NeuroNova: added by the plugin (orthanc.ExtendOrthancExplorer). */
(function () {
  'use strict';
  var VIEWER = __VIEWER__;

  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }

  function item(id, html) {
    return '<li class="neuronova-' + id + '" style="white-space:normal">' + html + '</li>';
  }

  function getJson(url, done, fail) {
    $.ajax({url: url, dataType: 'json', cache: false, success: done,
            error: function (xhr) { fail(xhr.status); }});
  }

  function htj2kText(status) {
    var counts = status.counts || {}, parts = [];
    Object.keys(counts).sort().forEach(function (key) { parts.push(esc(key) + ': ' + esc(counts[key])); });
    var done = counts.done || 0;
    var text = '<b>HTJ2K</b>: ' + esc(done) + ' of ' + esc(status.instances) +
      ' instance(s) have a rendition' + (parts.length ? ' (' + parts.join(', ') + ')' : '');
    (status.failures || []).slice(0, 5).forEach(function (f) {
      text += '<br><small>failed ' + esc(f.instance) + ': ' + esc(f.error || '') + '</small>';
    });
    return text;
  }

  function aiText(answer) {
    var jobs = Array.isArray(answer) ? answer : (answer && answer.jobs) || [];
    if (!jobs.length) { return '<b>AI jobs</b>: none'; }
    return '<b>AI jobs</b>:' + jobs.map(function (job) {
      var line = esc(job.model || job.model_name || '?') + ' \u2014 ' + esc(job.status || '?');
      if (job.attempts !== undefined) { line += ', ' + esc(job.attempts) + ' attempt(s)'; }
      if (job.error || job.last_error) { line += ': ' + esc(job.error || job.last_error); }
      return '<br><span class="neuronova-ai-job">' + line + '</span>';
    }).join('');
  }

  function show(list, id, html) {
    var li = $('li.neuronova-' + id, list);
    if (li.length) {
      li.html(html);
    } else {
      list.append(item(id, html));
    }
    list.listview('refresh');
  }

  // A "Log out" button in the header of every Explorer page.
  $('[data-role="page"]').live('pagebeforecreate', function () {
    var right = $('div.ui-btn-right', this);
    if (right.length && !$('a.neuronova-logout', right).length) {
      right.append('<a href="/neuronova/logout" class="neuronova-logout" data-icon="delete" ' +
                   'data-role="button" data-ajax="false" rel="external">Log out</a>');
    }
  });

  // "Open in OHIF Viewer": a one-hour, read-only share link for this study, made with the
  // admin's session. It works whether or not OHIF logs users in at an OpenID provider (a link
  // with a token skips that login), and it is audited like any share link.
  $('a.neuronova-open-ohif').live('click', function (event) {
    event.preventDefault();
    var study = $(this).attr('data-study');
    var win = window.open('', '_blank');  // now, while the click allows a new tab
    $.ajax({
      url: '../neuronova/shares', type: 'POST', contentType: 'application/json', dataType: 'json',
      data: JSON.stringify({study: study, ttl: 3600}),
      success: function (share) {
        if (win) { win.location.href = share.url; } else { window.location.href = share.url; }
      },
      error: function (xhr) {
        if (win) { win.close(); }
        alert('NeuroNova: could not open the viewer (HTTP ' + xhr.status + ')');
      }
    });
  });

  // The NeuroNova panel of the study page.
  $('#study').live('pagebeforecreate', function () {
    if (!$('#neuronova-study').length) {
      $('<ul data-role="listview" data-inset="true" data-theme="d" data-divider-theme="c" id="neuronova-study">' +
        '<li data-role="list-divider">NeuroNova</li></ul>').insertAfter($('#study-access'));
    }
  });

  $('#study').live('pageshow', function () {
    var list = $('#neuronova-study');
    var uuid = $.mobile.pageData && $.mobile.pageData.uuid;
    if (!uuid || !list.length) { return; }
    $('li:not([data-role="list-divider"])', list).remove();
    // Fixed order, filled in as the answers arrive.
    show(list, 'ohif', 'Open in OHIF Viewer');
    show(list, 'htj2k', '<b>HTJ2K</b>: \u2026');
    show(list, 'ai', '<b>AI jobs</b>: \u2026');
    getJson('../studies/' + encodeURIComponent(uuid), function (study) {
      var uid = (study.MainDicomTags || {}).StudyInstanceUID;
      if (!uid) { return; }
      show(list, 'ohif', '<a href="#" class="neuronova-open-ohif" data-study="' + esc(uid) + '">' +
           'Open in OHIF Viewer</a>');
      getJson('../neuronova/htj2k/studies/' + encodeURIComponent(uid),
              function (status) { show(list, 'htj2k', htj2kText(status)); },
              function (code) { show(list, 'htj2k', '<b>HTJ2K</b>: status unavailable (HTTP ' + esc(code) + ')'); });
      getJson('../neuronova/ai/jobs?study=' + encodeURIComponent(uid),
              function (answer) { show(list, 'ai', aiText(answer)); },
              function (code) {
                var why = code === 404 ? 'not available' : 'unavailable (HTTP ' + esc(code) + ')';
                show(list, 'ai', '<b>AI jobs</b>: ' + why);
              });
    }, function () { /* Explorer itself reports a missing study */ });
  });
})();
"""


def script() -> str:
    return _SCRIPT.replace("__VIEWER__", json.dumps(PREFIX))
