// SalesInbox GraphiQL: strawberry's page runs this in place of its own component
// (schema/graphiql.py inlines it). It uses the page's fetchURL, defaultHeaders,
// subscriptionUrl, parameters and EXAMPLE_QUERY, and DEFAULT_HEADERS set before it.
//
// Every request needs an API token, introspection included. Until the headers hold one,
// a token bar asks for it and GraphiQL does not introspect (it would only get
// UNAUTHENTICATED, and its Docs would say "Error fetching schema" until a reload). As
// soon as a token is given (in the bar or in the Headers tab), the fetcher changes, which
// makes GraphiQL introspect again: the schema loads without a reload.
const TOKEN_PLACEHOLDER = "<token>";
const HEADERS_STORAGE_KEY = "graphiql:headers"; // where GraphiQL keeps its Headers tab

function parseHeaders(text) {
  try {
    const parsed = JSON.parse(text || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch (error) {
    return {};
  }
}

function withoutAuthorization(headers) {
  const rest = {};
  for (const name of Object.keys(headers || {})) {
    if (name.toLowerCase() !== "authorization") rest[name] = headers[name];
  }
  return rest;
}

function authorizationOf(text) {
  const headers = parseHeaders(text);
  for (const name of Object.keys(headers)) {
    if (name.toLowerCase() === "authorization") return String(headers[name]).trim();
  }
  return "";
}

function isToken(authorization) {
  return /^Bearer\s+\S+$/i.test(authorization) && authorization.indexOf(TOKEN_PLACEHOLDER) < 0;
}

function headersWithToken(text, token) {
  const headers = withoutAuthorization(parseHeaders(text));
  return JSON.stringify(Object.assign({ Authorization: "Bearer " + token }, headers), null, 2);
}

function initialHeaders() {
  try {
    return parameters.headers || window.localStorage.getItem(HEADERS_STORAGE_KEY) || DEFAULT_HEADERS;
  } catch (error) {
    return parameters.headers || DEFAULT_HEADERS; // storage disabled
  }
}

// A fetcher that always sends `authorization`: GraphiQL's own copy of the headers may
// still hold the placeholder in the render where the token arrives.
function tokenFetcher(authorization) {
  const fetcher = GraphiQL.createFetcher({ url: fetchURL, headers: defaultHeaders, subscriptionUrl });
  return function (graphQLParams, options) {
    const headers = withoutAuthorization(options && options.headers);
    headers.Authorization = authorization;
    return fetcher(graphQLParams, Object.assign({}, options, { headers: headers }));
  };
}

function TokenBar(props) {
  const [token, setToken] = React.useState("");
  const e = React.createElement;
  function submit(event) {
    event.preventDefault();
    const value = token.trim().replace(/^Bearer\s+/i, "");
    if (value) props.onToken(value);
  }
  return e(
    "form",
    { id: "salesinbox-token-bar", onSubmit: submit },
    e("strong", null, "SalesInbox GraphiQL"),
    e("label", { htmlFor: "salesinbox-token" }, "API token"),
    e("input", {
      id: "salesinbox-token", type: "password", autoComplete: "off", autoFocus: true,
      placeholder: "sit_...", value: token, onChange: (event) => setToken(event.target.value),
    }),
    e("button", { type: "submit" }, "Load the schema"),
    e("span", null, "Get one on the server: salesinbox create-admin --email EMAIL (the first admin), " +
      "or salesinbox issue-token --email EMAIL."),
  );
}

function SalesInboxGraphiQL() {
  const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
  const [variables, setVariables] = React.useState(parameters.variables);
  const [headers, setHeaders] = React.useState(initialHeaders);
  const authorization = authorizationOf(headers);
  const tokenGiven = isToken(authorization);
  const fetcher = React.useMemo(() => tokenFetcher(authorization), [authorization]);
  const explorer = React.useMemo(() => GraphiQLPluginExplorer.explorerPlugin(), []);

  function acceptToken(token) {
    const text = headersWithToken(headers, token);
    try {
      window.localStorage.setItem(HEADERS_STORAGE_KEY, text);
    } catch (error) {
      // storage disabled: the token lasts as long as the page
    }
    setHeaders(text);
  }

  const e = React.createElement;
  return e(
    "div",
    { id: "salesinbox-graphiql" },
    tokenGiven ? null : e(TokenBar, { onToken: acceptToken }),
    e(
      "div",
      { id: "salesinbox-graphiql-editor" },
      e(GraphiQL, {
        fetcher: fetcher,
        // null: no introspection while there is no token; undefined: introspect.
        schema: tokenGiven ? undefined : null,
        defaultEditorToolsVisibility: "headers",
        plugins: [explorer],
        query: query,
        variables: variables,
        headers: headers,
        onEditQuery: (value) => { setQuery(value); updateURL({ q: value }); },
        onEditVariables: (value) => { setVariables(value); updateURL({ variables: value }); },
        onEditHeaders: setHeaders,
        inputValueDeprecation: true,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: true,
      }),
    ),
  );
}
