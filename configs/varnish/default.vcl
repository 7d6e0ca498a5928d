# Varnish for the WordPress farm (cache tier). The backend is the Swarm's WordPress service (its VIP);
# /varnish-health is what wpfarm's cache_tier asset and Swarm's healthcheck ask.
vcl 4.1;

backend wordpress {
    .host = "wordpress";
    .port = "80";
    .connect_timeout = 5s;
    .first_byte_timeout = 60s;
    .probe = { .url = "/wp-includes/images/blank.gif"; .interval = 10s; .timeout = 3s; .window = 5; .threshold = 3; }
}

acl purgers { "localhost"; "10.0.0.0"/8; }

sub vcl_recv {
    if (req.url == "/varnish-health") {
        return (synth(200, "OK"));
    }
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) { return (synth(405, "Not allowed")); }
        return (purge);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Never cache the admin, logins, previews, carts, the REST API for logged-in users, or cron.
    if (req.url ~ "^/(wp-admin|wp-login\.php|wp-cron\.php|xmlrpc\.php)" || req.url ~ "preview=true"
        || req.url ~ "^/(cart|checkout|my-account)" || req.url ~ "[?&]add-to-cart=") {
        return (pass);
    }
    if (req.http.Cookie ~ "(wordpress_logged_in_|wordpress_sec_|wp-postpass_|comment_author_|woocommerce_items_in_cart)") {
        return (pass);
    }
    # Anonymous visitors: drop the other cookies (analytics) so pages are shared.
    unset req.http.Cookie;
    return (hash);
}

sub vcl_backend_response {
    if (bereq.url ~ "\.(css|js|png|jpe?g|gif|svg|webp|woff2?)(\?.*)?$") {
        unset beresp.http.Set-Cookie;
        set beresp.ttl = 7d;
    } elsif (beresp.status == 200 && !beresp.http.Set-Cookie) {
        set beresp.ttl = 10m;
    }
    set beresp.grace = 6h;  # serve stale while WordPress is slow or restarting
}

sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
