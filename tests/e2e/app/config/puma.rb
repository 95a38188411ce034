# Puma (single mode) for the railwatch e2e reference app.
# 8 threads against an ActiveRecord pool of 3 (config/database.yml).
threads 8, 8
workers 0
environment ENV.fetch("RAILS_ENV", "production")
bind "tcp://127.0.0.1:#{ENV.fetch("PORT", 3300)}"

# Control/stats app on loopback, token-protected:
#   curl "http://127.0.0.1:$PUMA_CONTROL_PORT/stats?token=railwatch-e2e"
if ENV["PUMA_CONTROL_PORT"] && !ENV["PUMA_CONTROL_PORT"].empty?
  activate_control_app "tcp://127.0.0.1:#{ENV["PUMA_CONTROL_PORT"]}", { auth_token: "railwatch-e2e" }
end

pidfile ENV["PUMA_PIDFILE"] if ENV["PUMA_PIDFILE"]
