/**
 * Browser-side helpers the viewer and the operator console share (plain ES5 inside a <script>, no bundler):
 * `$`, `el` (an element with text, class, listeners and children), `toast`, `api` (JSON fetch that throws the
 * server's error message) and `badge`.
 */
export const BROWSER_HELPERS = `
function $(sel) { return document.querySelector(sel); }
function el(tag, props) {
  var node = document.createElement(tag);
  if (props) for (var k in props) {
    if (k === 'text') node.textContent = props[k];
    else if (k === 'class') node.className = props[k];
    else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), props[k]);
    else node.setAttribute(k, props[k]);
  }
  for (var i = 2; i < arguments.length; i++) { var c = arguments[i]; if (c != null) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); }
  return node;
}
function toast(message) {
  var t = $('#toast'); t.textContent = message; t.style.display = 'block';
  clearTimeout(toast.timer); toast.timer = setTimeout(function () { t.style.display = 'none'; }, 6000);
}
function api(method, url, body) {
  var init = { method: method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
  return fetch(url, init).then(function (res) {
    return res.json().catch(function () { return {}; }).then(function (json) {
      if (!res.ok) throw new Error((json.error && json.error.message) || res.statusText);
      return json;
    });
  });
}
function badge(status) { return el('span', { class: 'badge ' + status, text: status }); }
`;
