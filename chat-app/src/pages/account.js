// The account box of the lobby and room pages: who you are, and a form to log in or out.
// Without JavaScript the forms still post and the server redirects back; with it, a refused
// name is shown next to the form instead of on a page of its own.
(function () {
  'use strict';

  var who = document.getElementById('whoami');
  var loginForm = document.getElementById('login-form');
  var logoutForm = document.getElementById('logout-form');
  var error = document.getElementById('login-error');
  if (!who || !loginForm || !logoutForm || !error) {
    return;
  }

  // Come back to this very page after logging in or out.
  var here = window.location.pathname + window.location.search;
  var nexts = document.querySelectorAll('#login-form input[name="next"], #logout-form input[name="next"]');
  for (var i = 0; i < nexts.length; i++) {
    nexts[i].value = here;
  }

  function show(user) {
    var known = typeof user === 'string' && user !== '';
    // Text only: a name is never interpreted as HTML.
    who.textContent = known ? 'You are ' + user + '.' : 'You are a guest.';
    loginForm.hidden = known;
    logoutForm.hidden = !known;
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = text === '';
  }

  fetch('/whoami', { credentials: 'same-origin', cache: 'no-store' })
    .then(function (res) { return res.ok ? res.json() : null; })
    .then(function (data) { show(data && data.authenticated ? data.user : null); })
    .catch(function () { show(null); });

  function post(form) {
    showError('');
    fetch(form.action, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      credentials: 'same-origin'
    })
      .then(function (res) {
        if (res.ok) {
          // The new session reaches the WebSocket at its next handshake: start afresh.
          window.location.reload();
          return undefined;
        }
        return res.text().then(function (text) {
          showError(text.trim() || 'The server answered ' + res.status + '.');
        });
      })
      .catch(function () { showError('Cannot reach the server; try again.'); });
  }

  loginForm.addEventListener('submit', function (e) {
    e.preventDefault();
    post(loginForm);
  });
  logoutForm.addEventListener('submit', function (e) {
    e.preventDefault();
    post(logoutForm);
  });
})();
