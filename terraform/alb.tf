# Load balancer: public ALB in the public subnets, one target group on the
# instances' port 8080.
#
# Without a certificate, port 80 forwards to the service. With one, port 443
# terminates TLS (TLS 1.2/1.3 policy) and port 80 only redirects to HTTPS.

locals {
  public_url = var.public_url != "" ? var.public_url : "${local.https_enabled ? "https" : "http"}://${aws_lb.main.dns_name}"

  # The target group's health check, and the timings of the service derived from it.
  health_check = {
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  # After SIGTERM the service keeps serving but answers /readyz with 503 for this long
  # (SHORTENER_DRAIN_DELAY), then closes its listener. The ALB stops routing to a target
  # only after unhealthy_threshold failed checks, interval seconds apart: the delay is that
  # plus one interval, so no new request reaches a closed listener when an instance restarts
  # without leaving the target group (a database password rotation). When the instance is
  # deregistered first (scale-in, instance refresh), the ALB has already stopped sending.
  drain_delay_seconds = local.health_check.interval * (local.health_check.unhealthy_threshold + 1)

  # hyper closes a kept-alive connection that sends no request for the header-read timeout.
  # A target must keep idle connections open longer than the ALB does (idle_timeout), or the
  # ALB reuses a connection the target is closing and answers 502. The ALB terminates the
  # client's connection, so the longer timeout is not open to slow clients.
  header_read_timeout_seconds = var.alb_idle_timeout + 5
}

resource "aws_lb" "main" {
  name               = "${local.name}-alb"
  load_balancer_type = "application"
  internal           = false
  subnets            = aws_subnet.public[*].id
  security_groups    = [aws_security_group.alb.id]

  drop_invalid_header_fields = true
  desync_mitigation_mode     = "defensive"
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = var.alb_idle_timeout

  dynamic "access_logs" {
    for_each = var.access_logs_bucket != "" ? [var.access_logs_bucket] : []
    content {
      bucket  = access_logs.value
      prefix  = local.name
      enabled = true
    }
  }

  tags = { Name = "${local.name}-alb" }
}

resource "aws_wafv2_web_acl_association" "alb" {
  count = var.web_acl_arn != "" ? 1 : 0

  resource_arn = aws_lb.main.arn
  web_acl_arn  = var.web_acl_arn
}

resource "aws_lb_target_group" "app" {
  name_prefix = substr(var.name, 0, 6)
  port        = local.app_port
  protocol    = "HTTP"
  target_type = "instance"
  vpc_id      = aws_vpc.main.id

  # How long a deregistering instance keeps its in-flight requests; the service
  # gives them the same time after SIGTERM (SHORTENER_SHUTDOWN_TIMEOUT).
  deregistration_delay = var.drain_seconds

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/readyz"
    matcher             = "200"
    interval            = local.health_check.interval
    timeout             = local.health_check.timeout
    healthy_threshold   = local.health_check.healthy_threshold
    unhealthy_threshold = local.health_check.unhealthy_threshold
  }

  tags = { Name = "${local.name}-app" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https_enabled ? "redirect" : "forward"
    target_group_arn = local.https_enabled ? null : aws_lb_target_group.app.arn

    dynamic "redirect" {
      for_each = local.https_enabled ? [1] : []
      content {
        protocol    = "HTTPS"
        port        = "443"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https_enabled ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app.arn
  }
}
